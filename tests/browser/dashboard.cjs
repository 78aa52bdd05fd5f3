// Drives tocsin's admin page in a real Chromium (Playwright): the live
// feed, its filter, Ack, "Silence like this", the alerts, silences and
// rules tabs. Run by tests/dashboard.rs with the engine's base URL and
// admin token; prints one JSON line; any failed expectation throws.
const { chromium } = require("playwright-core");
const fs = require("fs");
const os = require("os");
const path = require("path");

const [base, token] = process.argv.slice(2);
const WAIT = 20000;

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "tocsin-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
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
    const r = await fetch(`${base}/v1/events`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(event) });
    if (r.status !== 202) throw new Error(`POST /v1/events: ${r.status} ${await r.text()}`);

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

    if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);
    console.log(JSON.stringify({ ok: true, matchers }));
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
