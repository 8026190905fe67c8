// Evolution API's websocket clients, unchanged, against evorelay: the real
// socket.io-client 4.x connects through the host's port and proxy to the
// websocket plugin. host/e2e's TestSocketIOClients starts the sidecar
// (EVORELAY_NAMING=evolution, as Evolution API names events), enables the
// websocket sink for EVORELAY_A and EVORELAY_B, and runs this file with
// node --test.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";

const URL = process.env.EVORELAY_URL;
const KEY = process.env.EVORELAY_KEY;
const A = process.env.EVORELAY_A;
const B = process.env.EVORELAY_B;
assert.ok(URL && KEY && A && B, "EVORELAY_URL, EVORELAY_KEY, EVORELAY_A and EVORELAY_B must be set (run through go test ./host/e2e -run TestSocketIOClients)");

const sockets = [];
after(() => sockets.forEach((s) => s.close()));

// connect opens a socket and resolves once it joined its namespace, or
// rejects with the connect_error. s.got records every event it receives,
// from the first, as {name, payload, offset}.
function connect(nsp, opts = {}) {
  const s = io(URL + nsp, { reconnection: false, ...opts });
  sockets.push(s);
  s.got = [];
  s.onAny((name, payload, offset) => s.got.push({ name, payload, offset }));
  return new Promise((resolve, reject) => {
    s.once("connect", () => resolve(s));
    s.once("connect_error", (err) => { s.close(); reject(err); });
  });
}

// until resolves when cond() holds; it checks every 20 ms, up to 20 s.
async function until(what, cond) {
  for (let i = 0; i < 1000; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail("timed out waiting for " + what);
}

// post sends events to the sidecar's ingest route, as the engine does.
async function post(instance, n, tag) {
  const evs = [];
  for (let i = 0; i < n; i++) {
    evs.push({
      event: "messages.upsert", instance,
      data: { key: { id: `${tag}-${i}` }, seq: i, tag },
      sender: "5511999999999@s.whatsapp.net", server_url: "http://engine:8080", apikey: "instance-token",
    });
  }
  const res = await fetch(URL + "/events", { method: "POST", headers: { apikey: KEY, "content-type": "application/json" }, body: JSON.stringify(evs) });
  const body = await res.text();
  assert.equal(res.status, 202, body);
  return JSON.parse(body).ids;
}

test("default transports with ?apikey=: long-polling, then the upgrade to websocket", async () => {
  const s = io(URL + "/" + A, { reconnection: false, query: { apikey: KEY } });
  sockets.push(s);
  let opened;
  s.io.once("open", () => { opened = s.io.engine.transport.name; });
  const upgraded = new Promise((resolve) => s.io.once("open", () => s.io.engine.once("upgrade", (t) => resolve(t.name))));
  await new Promise((resolve, reject) => { s.once("connect", resolve); s.once("connect_error", reject); });
  assert.equal(opened, "polling");
  assert.equal(await upgraded, "websocket");
  s.close();
});

test("websocket-only with the apikey header", async () => {
  const s = await connect("/" + A, { transports: ["websocket"], extraHeaders: { apikey: KEY } });
  assert.equal(s.io.engine.transport.name, "websocket");
  s.close();
});

test("the key in the socket.io auth payload", async () => {
  const s = await connect("/" + A, { transports: ["websocket"], auth: { apikey: KEY } });
  s.close();
});

test("a wrong key is refused, wherever it is sent", async () => {
  await assert.rejects(connect("/" + A, { query: { apikey: "wrong" } }), /xhr poll error/);
  await assert.rejects(connect("/" + A, { transports: ["websocket"], extraHeaders: { apikey: "wrong" } }), /websocket error/);
  await assert.rejects(connect("/" + A, { auth: { apikey: "wrong" } }), /invalid API key/);
  await assert.rejects(connect("/" + A), /missing API key/);
});

test("an invalid namespace is refused; an instance never seen before is not", async () => {
  await assert.rejects(connect("/a/b", { query: { apikey: KEY } }), /Invalid namespace/);
  const s = await connect("/never-seen-" + Date.now(), { query: { apikey: KEY } });
  s.close();
});

test("20 events on /<instance> in order with the envelope; the other instance's namespace does not see them; / sees both", async () => {
  const sa = await connect("/" + A, { query: { apikey: KEY } });
  const sb = await connect("/" + B, { transports: ["websocket"], extraHeaders: { apikey: KEY } });
  const sall = await connect("/", { auth: { apikey: KEY } });
  const [ga, gb, gall] = [sa.got, sb.got, sall.got];

  const idsA = await post(A, 20, "a");
  const idsB = await post(B, 3, "b");
  await until("20 events on /" + A, () => ga.length >= 20);
  await until("3 events on /" + B, () => gb.length >= 3);
  await until("23 events on /", () => gall.length >= 23);

  assert.equal(ga.length, 20);
  ga.forEach((e, i) => {
    assert.equal(e.name, "messages.upsert");
    assert.deepEqual(Object.keys(e.payload), ["event", "instance", "data", "date_time", "sender", "server_url", "apikey"]);
    assert.equal(e.payload.event, "messages.upsert");
    assert.equal(e.payload.instance, A);
    assert.deepEqual(e.payload.data, { key: { id: `a-${i}` }, seq: i, tag: "a" });
    assert.equal(e.payload.sender, "5511999999999@s.whatsapp.net");
    assert.equal(e.payload.server_url, "http://engine:8080");
    assert.equal(e.payload.apikey, "instance-token");
    assert.match(e.payload.date_time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.equal(e.offset, idsA[i], "the last argument is the delivery id");
  });
  assert.deepEqual(gb.map((e) => e.offset), idsB, "/" + B + " sees only its own events");
  assert.deepEqual(gall.filter((e) => e.payload.instance === A).map((e) => e.offset), idsA);
  assert.deepEqual(gall.filter((e) => e.payload.instance === B).map((e) => e.offset), idsB);
  [sa, sb, sall].forEach((s) => s.close());
});

test("a reconnect within the recovery window gets what it missed", async () => {
  const s = await connect("/" + A, { query: { apikey: KEY } });
  const watcher = await connect("/" + A, { transports: ["websocket"], extraHeaders: { apikey: KEY } });
  const [got, seen] = [s.got, watcher.got];
  const first = await post(A, 5, "before");
  await until("5 events", () => got.length >= 5);

  s.disconnect();
  const missed = await post(A, 5, "missed");
  await until("the watcher sees the missed events", () => seen.length >= 10);
  assert.equal(got.length, 5, "nothing arrives while disconnected");

  s.connect();
  await new Promise((resolve, reject) => { s.once("connect", resolve); s.once("connect_error", reject); });
  assert.equal(s.recovered, true, "socket.recovered");
  const after = await post(A, 2, "after");
  await until("12 events", () => got.length >= 12);
  assert.deepEqual(got.map((e) => e.offset), [...first, ...missed, ...after]);
  s.close();
  watcher.close();
});

test("an offset no longer in the window: a gap event, then what the window holds", async () => {
  const s = await connect("/" + B, { transports: ["websocket"], auth: { apikey: KEY, offset: "not-an-id" } });
  const got = s.got;
  await until("the gap event and the 3 events the window holds", () => got.length >= 4);
  assert.equal(got[0].name, "evorelay.gap");
  assert.equal(got[0].payload.since, "not-an-id");
  assert.equal(got[0].payload.instance, B);
  assert.equal(got[0].payload.oldest, got[1].offset);
  assert.deepEqual(got.slice(1).map((e) => e.payload.data.tag), ["b", "b", "b"]);
  assert.equal(s.recovered, false);
  s.close();
});
