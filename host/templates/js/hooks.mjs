// Node module hooks for the unit tests: `tocsin:plugin/...` imports resolve
// to the in-memory host in fake-host.mjs (in the engine, they are the host).
export async function resolve(specifier, context, next) {
  if (specifier.startsWith('tocsin:plugin/')) {
    return { url: new URL('./fake-host.mjs', import.meta.url).href, shortCircuit: true };
  }
  return next(specifier, context);
}
