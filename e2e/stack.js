// Shared by the browser tests: the `make run` stack (scripts/run.sh) on free
// ports, in its own process group, and Debian's headless Chromium
// (/usr/bin/chromium, or $CHROMIUM) driven by playwright-core, which never
// downloads a browser.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const outDir = path.join(root, "out", "e2e");
export const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
export const STEP_TIMEOUT = 15_000;

// freePort asks the kernel for a port that is free right now.
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// startStack runs scripts/run.sh as the leader of a new process group (so the
// whole group can be stopped at once) and resolves when it prints its URL.
// tmp holds Caddy's storage; env is added to the script's environment. It
// resolves to {url (Caddy), fakepi (the fake platform's base URL), output(),
// stop()}.
export async function startStack(tmp, env = {}) {
  for (const bin of ["caddy", "fakepi", "goapp"]) {
    assert.ok(existsSync(path.join(root, "bin", bin)), `bin/${bin} is missing: run make build first`);
  }
  const [port, fakepi, app, admin] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const fullEnv = {
    ...process.env,
    PORT: String(port),
    FAKEPI_ADDR: `127.0.0.1:${fakepi}`,
    APP_ADDR: `127.0.0.1:${app}`,
    ADMIN_PORT: String(admin),
    // Caddy's storage (pi_guard's payment records) in a throwaway directory.
    RUN_DIR: path.join(tmp, "caddy"),
    ...env,
  };
  const proc = spawn("bash", ["scripts/run.sh"], { cwd: root, env: fullEnv, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  proc.stdout.on("data", (d) => (output += d));
  proc.stderr.on("data", (d) => (output += d));
  const exited = new Promise((resolve) => proc.on("exit", (code, signal) => resolve({ code, signal })));

  const killGroup = (signal) => {
    try {
      process.kill(-proc.pid, signal);
    } catch {
      // already gone
    }
  };
  // Last resorts if the test process ends without running after(): on exit,
  // and on Ctrl-C or kill (the stack is in its own session, out of reach of
  // the terminal's Ctrl-C).
  const onExit = () => killGroup("SIGKILL");
  const onSignal = (signal) => {
    killGroup("SIGTERM");
    setTimeout(() => process.exit(128 + os.constants.signals[signal]), 1_000);
  };
  process.on("exit", onExit);
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  const stop = async () => {
    killGroup("SIGTERM");
    const timer = setTimeout(() => killGroup("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
    killGroup("SIGKILL"); // anything left in the group
    process.off("exit", onExit);
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  };

  // Ready when the script prints the address to open, as it does for a person.
  const url = `http://localhost:${port}/`;
  let ready = false;
  let gone = false;
  exited.then(() => (gone = true));
  for (const deadline = Date.now() + 30_000; !gone && Date.now() < deadline; ) {
    if (output.includes(`Open ${url}`)) {
      ready = true;
      break;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const s = { proc, url, fakepi: `http://127.0.0.1:${fakepi}/`, output: () => output, stop };
  if (!ready) {
    await stop();
    throw new Error(`scripts/run.sh did not come up:\n${output}`);
  }
  return s;
}

// launchBrowser starts headless Chromium with its profile in dir.
export async function launchBrowser(dir) {
  assert.ok(existsSync(chromiumPath), `${chromiumPath} is missing: apt-get install -y chromium (or set CHROMIUM)`);
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: chromiumPath,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1200, height: 900 },
    deviceScaleFactor: 1,
  });
  context.setDefaultTimeout(STEP_TIMEOUT);
  return context;
}

// watchPage collects a page's script errors and its requests to anything but
// this machine, into the arrays given.
export function watchPage(page, pageErrors, foreignRequests) {
  page.on("pageerror", (err) => pageErrors.push(String(err)));
  page.on("console", (msg) => {
    // Refused requests (4xx) are logged by Chromium as "Failed to load
    // resource"; anything else is a bug in the page.
    if (msg.type() === "error" && !msg.text().startsWith("Failed to load resource")) pageErrors.push("console: " + msg.text());
  });
  page.on("request", (req) => {
    const u = new URL(req.url());
    if (!["localhost", "127.0.0.1"].includes(u.hostname) && u.protocol !== "data:") foreignRequests.push(req.url());
  });
}

export async function getJSON(url, init) {
  const res = await fetch(url, { cache: "no-store", ...init });
  assert.equal(res.status, 200, url);
  return res.json();
}
