// SPDX-License-Identifier: Apache-2.0
// Two pages of the chat, in headless Chromium, join one room and talk.
// Prints TAP. Skips (not fails) only when Chromium or playwright-core is
// absent on a user's machine; CI installs both.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { createServer } from "node:net";

const here = dirname(fileURLToPath(import.meta.url));
const chromium = process.env.CHROMIUM || "/usr/bin/chromium";
const chat = process.env.XRAPTOR_CHAT;
const webDirs = (process.env.XRAPTOR_WEB || "").split(":").filter(Boolean);
const shots = process.env.XRAPTOR_ARTIFACTS || join(process.cwd(), "artifacts");

// XRAPTOR_PLAYWRIGHT_DIR: where npm installed it, when not beside this
// file (make distcheck runs a copy of the tree without node_modules).
let playwright;
try {
  const from = process.env.XRAPTOR_PLAYWRIGHT_DIR || here;
  playwright = createRequire(join(from, "package.json"))("playwright-core");
} catch {
  console.log("1..0 # SKIP playwright-core not installed (npm install in tests/browser)");
  process.exit(0);
}
if (!existsSync(chromium)) {
  console.log(`1..0 # SKIP no Chromium at ${chromium} (apt-get install chromium)`);
  process.exit(0);
}

let n = 0, failed = 0;
async function test(name, fn) {
  n++;
  try { await fn(); console.log(`ok ${n} - ${name}`); }
  catch (e) { failed++; console.log(`not ok ${n} - ${name}`); for (const l of String(e.stack || e).split("\n")) console.log("# " + l); }
}

// A port nobody listens on now, for a broker the test starts.
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
  });
}

// ready: what the log must show besides "listening" (an antenna's line).
function startChat(extra = [], ready = null) {
  const logDir = mkdtempSync(join(tmpdir(), "xraptor-browser-"));
  const args = ["--listen", "127.0.0.1:0", ...webDirs.flatMap((d) => ["--static-dir", d]), ...extra];
  const proc = spawn(chat, args, { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  proc.stderr.on("data", (d) => { log += d; });
  return new Promise((resolve, reject) => {
    const deadline = setTimeout(() => reject(new Error("xraptor-chat did not start: " + log)), 10000);
    const poll = setInterval(() => {
      const m = /listening on ws:\/\/127\.0\.0\.1:(\d+)/.exec(log);
      if (m && (!ready || ready.test(log))) { clearInterval(poll); clearTimeout(deadline); resolve({ proc, port: Number(m[1]), logDir, log: () => log }); }
    }, 20);
  });
}

const server = await startChat();
const profile = mkdtempSync(join(tmpdir(), "xraptor-chromium-"));
const browser = await playwright.chromium.launch({
  executablePath: chromium,
  args: ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  timeout: 30000,
});

try {
  const base = `http://127.0.0.1:${server.port}/`;
  const ctx = await browser.newContext();
  const ana = await ctx.newPage();
  const bia = await ctx.newPage();
  for (const p of [ana, bia]) p.setDefaultTimeout(10000);

  await test("page loads and connects", async () => {
    for (const p of [ana, bia]) {
      await p.goto(base);
      await p.waitForSelector("body[data-state=open]");
    }
  });

  await test("two pages in one room exchange messages", async () => {
    for (const [p, name] of [[ana, "ana"], [bia, "bia"]]) {
      await p.fill("#room", "browser-room");
      await p.fill("#name", name);
      await p.click("#join-button");
      await p.waitForSelector("body[data-joined=browser-room]");
    }
    await ana.fill("#text", "hello from ana");
    await ana.click("#send-button");
    await bia.waitForSelector("#messages li:has-text('hello from ana')");
    await ana.waitForSelector("#messages li:has-text('hello from ana')");
    await bia.fill("#text", "ol\u00e1 <b>ana</b>");
    await bia.press("#text", "Enter");
    const li = await ana.waitForSelector("#messages li:has-text('ol\u00e1 <b>ana</b>')");
    // Shown as text, never as markup.
    if ((await li.innerHTML()).includes("<b>")) throw new Error("message rendered as HTML");
    const origin = await li.$eval(".origin", (e) => e.textContent);
    if (origin !== "bia") throw new Error(`origin ${origin}`);
  });

  await test("leaving says tchau and stops delivery", async () => {
    await bia.click("#leave-button");
    await bia.waitForSelector("#messages li.system:has-text('tchau!')");
    await ana.fill("#text", "are you there?");
    await ana.click("#send-button");
    await ana.waitForSelector("#messages li:has-text('are you there?')");
    // A barrier, not a pause: bia joins again and hears her own message;
    // a delivery of ana's (sent before) would have reached her page first.
    await bia.click("#join-button");
    await bia.waitForSelector("body[data-joined=browser-room]");
    await bia.fill("#text", "back again");
    await bia.click("#send-button");
    await bia.waitForSelector("#messages li:has-text('back again')");
    if (await bia.$("#messages li:has-text('are you there?')")) throw new Error("delivered after leave");
  });

  await test("xraptor.js refreshes its token: a 3 s token, no close in 7 s", async () => {
    // Tokens minted by python3-jwt (not ours), living 3 s; the server
    // closes 4001 one second past exp unless a fresh one came.
    const dir = mkdtempSync(join(tmpdir(), "xraptor-token-"));
    const key = join(dir, "hs.key");
    writeFileSync(key, "browser-secret-browser-secret-browser-secret\n");
    const mint = () => execFileSync("/usr/bin/python3", ["-c",
      "import jwt, sys, time; k = open(sys.argv[1], 'rb').read().rstrip(b'\\n');" +
      "print(jwt.encode({'sub': 'page', 'exp': int(time.time()) + 3}, k, algorithm='HS256'))",
      key]).toString().trim();
    const authed = await startChat(["--jwt-key", key, "--jwt-grace", "1", "--jwt-leeway", "0"]);
    try {
      const page = await ctx.newPage();
      let minted = 0;
      await page.exposeFunction("mintToken", () => { minted++; return mint(); });
      await page.goto(`http://127.0.0.1:${authed.port}/xraptor.js`);
      const out = await page.evaluate(async () => {
        const { XRaptor } = await import("/xraptor.js");
        let closes = 0, refreshed = 0;
        const got = [];
        const xr = new XRaptor(`ws://${location.host}/`, { token: () => window.mintToken(), refreshBefore: 1500 });
        xr.on("state", (s) => { if (s === "closed") closes++; });
        xr.on("token", (e) => { if (e.refreshed) refreshed++; });
        await xr.connect();
        await xr.subscribe("/chat_messages", { chat_id: "token-room" }, (p) => got.push(p.message));
        await new Promise((r) => setTimeout(r, 7000));
        await xr.request("/send_message_to_chat_room", "POST",
                         { chat_id: "token-room", client_id: "page", message: "after 7 s" });
        await new Promise((r) => setTimeout(r, 500));
        xr.close();
        return { closes, refreshed, got };
      });
      if (out.closes !== 0) throw new Error(`closed ${out.closes} time(s): ${authed.log()}`);
      if (out.refreshed < 3 || minted < 4) throw new Error(`refreshed ${out.refreshed}, minted ${minted}`);
      if (!out.got.includes("after 7 s")) throw new Error(`subscription lost: ${JSON.stringify(out.got)}`);
      await page.close();
    } finally {
      authed.proc.kill("SIGTERM");
      rmSync(authed.logDir, { recursive: true, force: true });
      rmSync(dir, { recursive: true, force: true });
    }
  });

  await test("with --presence each page shows who is in the room, and who left", async () => {
    const pres = await startChat(["--presence", "--presence-grace", "0.2"]);
    try {
      const pages = [await ctx.newPage(), await ctx.newPage()];
      for (const [p, name] of [[pages[0], "carla"], [pages[1], "davi"]]) {
        p.setDefaultTimeout(10000);
        await p.goto(`http://127.0.0.1:${pres.port}/`);
        await p.waitForSelector("body[data-state=open]");
        await p.fill("#room", "presence-room");
        await p.fill("#name", name);
        await p.click("#join-button");
        await p.waitForSelector("body[data-joined=presence-room]");
      }
      // Each page: both names (davi's page got carla from the query,
      // carla's page got davi from the join event).
      for (const p of pages) {
        await p.waitForSelector("#members li:has-text('carla')");
        await p.waitForSelector("#members li:has-text('davi')");
      }
      await pages[1].click("#leave-button");
      await pages[0].waitForSelector("#members li:has-text('davi')", { state: "detached" });
      if (!(await pages[0].$("#members li:has-text('carla')"))) throw new Error("carla gone too");
      for (const p of pages) await p.close();
    } finally {
      pres.proc.kill("SIGTERM");
      rmSync(pres.logDir, { recursive: true, force: true });
    }
  });

  await test("xraptor.js recovers what a dropped stream missed: 600 posts, each once, in order", async () => {
    // A publisher posts continuously; the subscriber's connection is
    // dropped twice (closed under it; the reconnect waits 250 ms, about
    // 100 posts) and its stream recovers from the last position it saw.
    const hist = await startChat(["--history-size", "1000", "--history-ttl", "300"]);
    try {
      const page = await ctx.newPage();
      await page.goto(`http://127.0.0.1:${hist.port}/xraptor.js`);
      const out = await page.evaluate(async () => {
        const { XRaptor } = await import("/xraptor.js");
        const url = `ws://${location.host}/`;
        const got = [], recoveries = [];
        // The first URL refuses (port 1): a list moves on to the next.
        const sub = new XRaptor(["ws://127.0.0.1:1/", url]);
        sub.on("recovery", (r) => recoveries.push(r));
        await sub.connect().catch(() => {});
        for (let k = 0; k < 50 && sub.state !== "open"; k++) await new Promise((r) => setTimeout(r, 100));
        if (sub.state !== "open") { sub.close(); return { error: `never connected; last tried ${sub.url}` }; }
        await sub.subscribe("/chat_messages", { chat_id: "hist-room" }, (p) => got.push(p.message));
        const pub = new XRaptor(url);
        await pub.connect();
        // The SUB holds once a post of its own came back.
        await pub.request("/send_message_to_chat_room", "POST", { chat_id: "hist-room", client_id: "p", message: "start" });
        for (let k = 0; k < 100 && !got.length; k++) await new Promise((r) => setTimeout(r, 20));
        for (let i = 0; i < 600; i++) {
          await pub.request("/send_message_to_chat_room", "POST", { chat_id: "hist-room", client_id: "p", message: `m${i}` });
          if (i === 150 || i === 400) sub.ws.close();
          await new Promise((r) => setTimeout(r, 1));
        }
        for (let k = 0; k < 200 && got[got.length - 1] !== "m599"; k++) await new Promise((r) => setTimeout(r, 50));
        const kept = await pub.history("hist-room", 3);
        sub.close(); pub.close();
        return { got, recoveries, kept };
      });
      if (out.error) throw new Error(out.error);
      const want = ["start", ...Array.from({ length: 600 }, (_, i) => `m${i}`)];
      if (JSON.stringify(out.got) !== JSON.stringify(want)) {
        const seen = new Set(), dup = out.got.filter((m) => seen.has(m) || !seen.add(m));
        throw new Error(`got ${out.got.length} of ${want.length}, duplicates ${dup.slice(0, 5)}, ` +
                        `missing ${want.filter((m) => !seen.has(m)).slice(0, 5)}`);
      }
      if (out.recoveries.length !== 2 || !out.recoveries.every((r) => r.recovered === true))
        throw new Error(`recoveries: ${JSON.stringify(out.recoveries)}`);
      if (out.kept.messages.map((m) => JSON.parse(m.payload).message).join() !== "m597,m598,m599")
        throw new Error(`history: ${JSON.stringify(out.kept)}`);
      console.log(`# recovered twice, 601 messages each once in order`);
      await page.close();
    } finally {
      hist.proc.kill("SIGTERM");
      rmSync(hist.logDir, { recursive: true, force: true });
    }
  });

  await test("a node SIGKILLed under a stream: xraptor.js moves to the next and recovers there (redis://), each message once, in order", async () => {
    // Two nodes share a real redis-server's history; the page's stream is
    // on node A, the posts go through node B, and A is killed mid-stream.
    const redisBin = process.env.REDIS_SERVER || "/usr/bin/redis-server";
    if (!existsSync(redisBin)) throw new Error(`no redis-server at ${redisBin} (apt-get install redis-server)`);
    const rport = await freePort();
    const redis = spawn(redisBin, ["--port", String(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                        { stdio: "ignore" });
    const nodes = [];
    try {
      for (let k = 0; k < 2; k++)
        nodes.push(await startChat(["--antenna", `redis://127.0.0.1:${rport}`, "--history-size", "2000", "--history-ttl", "300"],
                                   /antenna connected/));
      const [a, b] = nodes;
      const page = await ctx.newPage();
      await page.exposeFunction("killNodeA", () => { a.proc.kill("SIGKILL"); });
      await page.goto(`http://127.0.0.1:${b.port}/xraptor.js`);
      const out = await page.evaluate(async ([ua, ub]) => {
        const { XRaptor } = await import("/xraptor.js");
        const got = [], recoveries = [];
        const sub = new XRaptor([ua, ub]);
        sub.on("recovery", (r) => recoveries.push(r));
        await sub.connect();
        await sub.subscribe("/chat_messages", { chat_id: "failover-room" }, (p) => got.push(p.message));
        const pub = new XRaptor(ub);
        await pub.connect();
        await pub.request("/send_message_to_chat_room", "POST", { chat_id: "failover-room", client_id: "p", message: "start" });
        for (let k = 0; k < 100 && !got.length; k++) await new Promise((r) => setTimeout(r, 20));
        for (let i = 0; i < 600; i++) {
          await pub.request("/send_message_to_chat_room", "POST", { chat_id: "failover-room", client_id: "p", message: `m${i}` });
          if (i === 200) await window.killNodeA();
          await new Promise((r) => setTimeout(r, 1));
        }
        for (let k = 0; k < 300 && got[got.length - 1] !== "m599"; k++) await new Promise((r) => setTimeout(r, 50));
        const last = sub.url;
        sub.close(); pub.close();
        return { got, recoveries, last };
      }, [`ws://127.0.0.1:${a.port}/`, `ws://127.0.0.1:${b.port}/`]);
      const want = ["start", ...Array.from({ length: 600 }, (_, i) => `m${i}`)];
      if (JSON.stringify(out.got) !== JSON.stringify(want)) {
        const seen = new Set(), dup = out.got.filter((m) => seen.has(m) || !seen.add(m));
        throw new Error(`got ${out.got.length} of ${want.length}, duplicates ${dup.slice(0, 5)}, ` +
                        `missing ${want.filter((m) => !seen.has(m)).slice(0, 5)}`);
      }
      if (out.recoveries.length !== 1 || out.recoveries[0].recovered !== true)
        throw new Error(`recoveries: ${JSON.stringify(out.recoveries)}`);
      if (out.last !== `ws://127.0.0.1:${b.port}/`) throw new Error(`the stream ended on ${out.last}`);
      console.log(`# node A killed after m200: the stream moved to node B and recovered, 601 messages each once in order`);
      await page.close();
    } finally {
      for (const nd of nodes) { nd.proc.kill("SIGKILL"); rmSync(nd.logDir, { recursive: true, force: true }); }
      redis.kill("SIGKILL");
    }
  });

  await test("screenshot of the chat written as an artifact", async () => {
    mkdirSync(shots, { recursive: true });
    const path = join(shots, "chat.png");
    await ana.screenshot({ path, fullPage: true });
    const png = readFileSync(path);
    if (png.length < 1000 || png.readUInt32BE(0) !== 0x89504e47) throw new Error("no PNG written");
    console.log(`# screenshot: ${path}`);
  });
} finally {
  await browser.close();
  server.proc.kill("SIGTERM");
  rmSync(profile, { recursive: true, force: true });
  rmSync(server.logDir, { recursive: true, force: true });
}
console.log(`1..${n}`);
process.exit(failed ? 1 : 0);
