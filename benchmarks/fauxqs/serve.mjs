// fauxqs on 127.0.0.1 only: its own CLI (startFauxqs) listens on every interface, so this builds
// the same app with buildApp and listens on loopback. Usage: node serve.mjs <fauxqs dir> <port>
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const [dir, port] = process.argv.slice(2);
const { buildApp } = await import(pathToFileURL(join(dir, "dist", "app.js")).href);
const app = buildApp({ logger: false, host: `127.0.0.1:${port}` });
await app.listen({ port: Number(port), host: "127.0.0.1" });
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => app.close().then(() => process.exit(0)));
}
