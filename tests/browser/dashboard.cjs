// Drives tocsin's admin page in a real Chromium (Playwright): the live
// feed, its filter, Ack, "Silence like this", the alerts, silences and
// rules tabs, the overview's numbers updating, an alert's trace, the
// replay of a dead delivery, and the live page under a flood of
// notifications (measured). Screenshots of each page at 1280×800 go to
// the directory given. Run by tests/dashboard.rs with the engine's base
// URL, admin token and that directory; prints one JSON line; any failed
// expectation throws.
const { chromium } = require("playwright-core");
const fs = require("fs");
const os = require("os");
const path = require("path");

const [base, token, shots] = process.argv.slice(2);
const WAIT = 20000;
const FLOOD = 5000;

async function post(events) {
  const r = await fetch(`${base}/v1/events`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(events) });
  if (r.status !== 202) throw new Error(`POST /v1/events: ${r.status} ${await r.text()}`);
}

async function metric(name) {
  const text = await (await fetch(`${base}/metrics`)).text();
  return text.split("\n").filter((l) => l.startsWith(name)).reduce((sum, l) => sum + Number(l.split(" ").pop()), 0);
}

async function shoot(page, name) {
  await page.screenshot({ path: path.join(shots, `${name}.png`) });
}

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "tocsin-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  const errors = [];
  try {
    const page = await context.newPage();
    page.on("pageerror", (e) => errors.push(String(e)));
    page.setDefaultTimeout(WAIT);
    await page.goto(`${base}/?token=${encodeURIComponent(token)}`);
    await page.fill("#user", "playwright");
    await page.dispatchEvent("#user", "change");
    await page.waitForSelector("#conn.up");

    const event = { errorCode: "DISK_FULL", severity: "critical", serviceName: "db", message: "disk full on db-1", timestamp: Date.now() };
    await post(event);

    const row = page.locator("#feed tr", { hasText: "DISK_FULL" });
    await row.waitFor();
    const cls = await row.getAttribute("class");
    if (!cls.includes("sev-critical")) throw new Error(`the row is not coloured critical: ${cls}`);

    await page.fill("#f-service", "nothing-like-it");
    await row.waitFor({ state: "hidden" });
    await page.fill("#f-service", "db");
    await row.waitFor({ state: "visible" });

    await row.getByRole("button", { name: "Ack" }).click();
    await page.locator("#feed tr", { hasText: "acknowledged by playwright" }).waitFor();

    await row.getByRole("button", { name: "Silence like this" }).click();
    await page.waitForSelector("#silences:not([hidden])");
    const matchers = await page.inputValue("#s-matchers");
    if (!matchers.includes('service="db"') || !matchers.includes('alertname="DISK_FULL"')) throw new Error(`prefilled matchers: ${matchers}`);
    await page.fill("#s-comment", "disk replaced tonight");
    await page.click("#silence-form button[type=submit]");
    await page.locator("#silence-rows tr", { hasText: "disk replaced tonight" }).waitFor();

    await page.click("nav button[data-tab=alerts]");
    const alert = page.locator("#alert-rows tr", { hasText: "acknowledged by playwright" });
    await alert.waitFor();
    const alertText = await alert.innerText();
    if (!alertText.includes("silenced")) throw new Error(`the alert should show its silence: ${alertText}`);

    await page.click("nav button[data-tab=rules]");
    await page.locator("#rule-errors .error", { hasText: "broken.toml" }).waitFor();
    await page.locator("#rule-rows tr", { hasText: "disks" }).waitFor();
    // Its events and alerts of the last 24 h (the DISK_FULL it took and fired on).
    const ruleCounts = page.locator("#rule-rows tr[data-rule=disks] td.num");
    for (let i = 0; i < 40 && (await ruleCounts.allInnerTexts()).join(" ") !== "1 1"; i++) {
      await page.waitForTimeout(250);
      await page.click("nav button[data-tab=rules]");
    }
    const counted = (await ruleCounts.allInnerTexts()).join(" ");
    if (counted !== "1 1") throw new Error(`the disks rule shows events and alerts "${counted}", not "1 1"`);

    await shoot(page, "rules");

    // Alerts: the trace of the alert's sample event.
    await page.click("nav button[data-tab=alerts]");
    await shoot(page, "alerts");
    await page.locator("#alert-rows tr", { hasText: "DISK_FULL" }).getByRole("button", { name: "Trace" }).click();
    await page.waitForSelector("#trace:not([hidden])");
    await page.locator("#trace-rows tr[data-stage=received]").waitFor();
    await page.locator("#trace-rows tr[data-stage=notified]", { hasText: "disks" }).waitFor();
    await shoot(page, "trace");

    // Overview: the numbers follow new events.
    await page.click("nav button[data-tab=overview]");
    await page.locator("#top-codes tr", { hasText: "DISK_FULL" }).waitFor();
    await post([1, 2, 3].map((i) => ({ errorCode: "CACHE_MISS", severity: "low", serviceName: "cache", message: `miss ${i}` })));
    await page.locator("#top-codes tr", { hasText: /CACHE_MISS\s*3/ }).waitFor();
    await page.locator("#health-rows tr[data-service=cache]").waitFor();
    const events = Number((await page.textContent("#o-events")).replace(/\D/g, ""));
    if (events < 4) throw new Error(`the overview counts ${events} events`);
    await shoot(page, "overview");

    // Deliveries: the webhook refused once, so its delivery is dead; replay it.
    await page.click("nav button[data-tab=deliveries]");
    const dead = page.locator("#delivery-rows tr", { hasText: "hooks" });
    await dead.waitFor({ timeout: 40000 }).catch(async () => {
      await page.click("nav button[data-tab=deliveries]");
      await dead.waitFor();
    });
    await shoot(page, "deliveries");
    await dead.getByRole("button", { name: "Replay" }).click();
    await page.selectOption("#d-status", "delivered");
    const delivered = page.locator("#delivery-rows tr", { hasText: "hooks" });
    for (let i = 0; i < 40 && !(await delivered.count()); i++) {
      await page.waitForTimeout(250);
      await page.dispatchEvent("#d-status", "change");
    }
    await delivered.waitFor();
    await page.fill("#h-rule", "hooks");
    await page.click("#history-form button[type=submit]");
    await page.locator("#history-rows tr", { hasText: "HOOK_FAIL" }).waitFor();

    // Post → row in the live feed, several times (reported, not asserted:
    // speed goals live in the benchmarks).
    await page.click("nav button[data-tab=live]");
    await page.fill("#f-service", "");
    const latencies = [];
    for (let i = 0; i < 10; i++) {
      const code = `LATENCY_${i}`;
      const t0 = Date.now();
      await post({ errorCode: code, severity: "low", serviceName: "probe", message: `probe ${i}` });
      await page.locator("#feed tr", { hasText: code }).waitFor();
      latencies.push(Date.now() - t0);
    }
    latencies.sort((a, b) => a - b);

    // The live page under a flood: FLOOD notifications in 30 s (twice
    // 5,000 a minute), frames timed in the page.
    await page.click("nav button[data-tab=live]");
    await page.fill("#f-service", "");
    await page.evaluate(() => {
      window.__frames = [];
      const tick = (t) => { window.__frames.push(t); if (!window.__stop) requestAnimationFrame(tick); };
      requestAnimationFrame(tick);
    });
    const countShown = async () => Number((await page.textContent("#live-count")).replace(/\D/g, ""));
    const before = await countShown();
    const droppedBefore = await metric("tocsin_ws_dropped_total");
    const started = Date.now();
    const per = 200;
    for (let i = 0; i < FLOOD; i += per) {
      const batch = [];
      for (let j = i; j < i + per; j++) batch.push({ errorCode: "FLOOD", severity: "medium", serviceName: `svc-${j}`, message: `flood ${j}` });
      await post(batch);
      const due = started + ((i + per) / FLOOD) * 30000;
      if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
    }
    const deadline = Date.now() + 120000;
    let seen = 0;
    while (Date.now() < deadline) {
      const dropped = (await metric("tocsin_ws_dropped_total")) - droppedBefore;
      seen = (await countShown()) - before;
      if (seen + dropped >= FLOOD) break;
      await page.waitForTimeout(200);
    }
    const rows = await page.locator("#feed tr").count();
    const frames = await page.evaluate(() => { window.__stop = true; return window.__frames; });
    const gaps = frames.slice(1).map((t, i) => t - frames[i]).sort((a, b) => a - b);
    const p99 = gaps[Math.floor(gaps.length * 0.99)] || 0;
    const longest = gaps[gaps.length - 1] || 0;
    const dropped = (await metric("tocsin_ws_dropped_total")) - droppedBefore;
    if (seen + dropped < FLOOD) throw new Error(`the live page showed ${seen} of ${FLOOD} flood notifications (${dropped} dropped by the server)`);
    if (rows > 1000) throw new Error(`the live list holds ${rows} rows; it should stay bounded at 1000`);
    await shoot(page, "live");

    if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);
    console.log(JSON.stringify({ ok: true, matchers, feedMs: { median: latencies[5], max: latencies[9] }, flood: { notifications: FLOOD, seconds: (Date.now() - started) / 1000, shown: seen, dropped, rows, frames: frames.length, p99FrameMs: Math.round(p99), longestFrameMs: Math.round(longest) } }));
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
