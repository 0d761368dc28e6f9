// Boots Pyodide and pysync from our own origin; nothing is fetched from any other origin.
//
// The steps (each a `performance` mark "pysync:<step>", its time in `pysyncBoot.steps`):
// - build: /build.json names this server's build (a hash of every file the page needs).
// - packages: the site-packages bundle (every pinned pure-Python wheel, unpacked by the server,
//   server/assets.py) is written into Pyodide's file system before Python starts (a directory
//   on sys.path beside site-packages): no micropip, one request, cached as immutable under the
//   build's URL.
// - runtime: loadPyodide(). When this browser holds a memory snapshot of this build (Cache
//   Storage, "pysync-snapshot-<build>"), Python starts from it with pysync and httpx already
//   imported; otherwise it starts plainly, imports them, and takes a snapshot for next time.
//   A snapshot that cannot be used (another build, unreadable, failing to start) is deleted
//   and the boot goes the plain way: it is only ever a shortcut.
// - imports: pysync, its sync client and httpx (nothing left to do after a snapshot).
// And afterwards, in the background (`pysyncBoot.settled`): the snapshot is stored, and the
// service worker (/sw.js) is registered, which keeps this build's files for offline opens.
import { loadPyodide } from "/pyodide/pyodide.mjs";

const INDEX_URL = "/pyodide/";
// The packages' directory, first on sys.path (PYTHONPATH). Not site-packages itself: Pyodide
// records what it finds there at start as loaded packages, which a snapshot must not hold.
const PACKAGES_DIR = "/lib/pysync-packages";
const SNAPSHOT_CACHE = "pysync-snapshot-";  // + the build; sw.js deletes other builds' caches
const SNAPSHOT_KEY = "/snapshot.bin";  // the entry's key inside that cache (never fetched)
// What the page imports before the snapshot is taken: what demo.py and the sync client need.
const PRELOAD = "import asyncio, json, uuid, httpx, pysync, pysync.client, pysync.idb, " +
  "pysync.browser, pysync.transport, pyodide.ffi, pyodide.code";

export class BootError extends Error {
  constructor(step, cause) {
    super(`boot step "${step}" failed: ${cause?.message ?? cause}`, { cause });
    this.name = "BootError";
    this.step = step;
  }
}

// `serviceWorker: false` and `snapshot: false` opt out (test.html: ?sw=0, ?snapshot=0).
export async function boot({ onProgress = () => {}, serviceWorker = true, snapshot = true } = {}) {
  const started = performance.now();
  const info = globalThis.pysyncBoot = {
    build: null, offline: false, snapshot: "off", fallback: null, steps: {},
    serviceWorker: "off", settled: null,
  };
  let settle;
  info.settled = new Promise((resolve) => { settle = resolve; });
  const step = async (name, message, work) => {
    onProgress(message);
    performance.mark(`pysync:${name}`);
    const t0 = performance.now();
    try {
      return await work();
    } catch (e) {
      throw e instanceof BootError ? e : new BootError(name, e);
    } finally {
      info.steps[name] = Math.round(performance.now() - t0);
    }
  };
  try {
    const build = await step("build", "checking the app's version", fetchBuild);
    info.build = build.build;
    info.offline = build.offline;
    // Read while the runtime downloads; a failure ends the boot (not a hang in fsInit).
    const bundle = fetchBytes(build.bundle).then(readBundle);
    const bundleFailed = bundle.then(() => new Promise(() => {}), (e) => {
      throw new BootError("packages", e);
    });
    const start = (options) => Promise.race([loadPyodide({
      indexURL: INDEX_URL, env: { PYTHONPATH: PACKAGES_DIR },
      fsInit: writePackages(bundle, info), ...options,
    }), bundleFailed]);
    const useCache = snapshot && "caches" in globalThis;
    const saved = useCache
      ? await step("snapshot read", "looking for a snapshot", () => readSnapshot(build.build))
      : null;
    let pyodide = null;
    if (saved) {
      pyodide = await step("runtime", "starting Python from its snapshot",
        () => startFromSnapshot(saved, start, info)).catch(async (e) => {
        if (e.step === "packages") throw e;  // not the snapshot's fault
        info.fallback = e.message;  // and the plain boot below stores a good snapshot
        await caches.delete(SNAPSHOT_CACHE + build.build).catch(() => {});
        return null;
      });
    }
    let made = null;
    if (!pyodide) {
      pyodide = await step("runtime", "loading the Python runtime",
        () => start({ _makeSnapshot: useCache }));
      await step("imports", "importing pysync", () => pyodide.runPython(PRELOAD));
      if (useCache) {
        made = await step("snapshot", "saving a snapshot for the next start", () => {
          const bytes = pyodide.makeMemorySnapshot();
          // With _makeSnapshot, Python's `js` module is a proxy of globalThis that records
          // paths (so a snapshot can name the JS objects it holds), and platform getters
          // called through it fail ("Illegal invocation": document, indexedDB, navigator).
          // Once the snapshot is taken, the app gets the real globalThis.
          pyodide.registerJsModule("js", globalThis);
          pyodide.runPython("import sys; sys.modules.pop('js', None)");
          return bytes;
        });
      }
    }
    info.ms = Math.round(performance.now() - started);
    onProgress(`ready in ${info.ms} ms`);
    // In the background: nothing the page waits for, but tests and benchmarks can.
    setTimeout(() => {
      Promise.allSettled([
        made && storeSnapshot(build.build, made, info),
        serviceWorker && registerWorker(info),
      ]).then(() => settle(info));
    }, 0);
    return pyodide;
  } catch (e) {
    settle(info);
    throw e;
  }
}

async function fetchBuild() {
  const response = await fetch("/build.json");
  if (!response.ok) throw new Error(`/build.json: HTTP ${response.status}`);
  // The service worker marks what it serves from its cache because the network failed.
  return { ...await response.json(), offline: response.headers.has("x-pysync-cached-build") };
}

async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

// The bundle's format is server/assets.py's site_packages_bundle: uint32 N, N bytes of JSON
// [[path, size], ...], then the files' bytes in that order.
function readBundle(bytes) {
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true);
  const index = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + headerLength)));
  let offset = 4 + headerLength;
  const files = index.map(([path, size]) => {
    const file = [path, bytes.subarray(offset, offset + size)];
    offset += size;
    return file;
  });
  if (offset !== bytes.length) throw new Error("the package bundle is truncated");
  return files;
}

function writePackages(bundle, info) {
  return async (FS) => {
    performance.mark("pysync:packages");
    const t0 = performance.now();
    const files = await bundle.catch(() => null);
    if (!files) return;  // reported by the boot (bundleFailed)
    const made = new Set();
    for (const [path, bytes] of files) {
      const target = `${PACKAGES_DIR}/${path}`;
      const dir = target.slice(0, target.lastIndexOf("/"));
      if (!made.has(dir)) { FS.mkdirTree(dir); made.add(dir); }
      FS.writeFile(target, bytes);
    }
    info.steps.packages = Math.round(performance.now() - t0);
    performance.mark("pysync:runtime (after packages)");
  };
}

async function readSnapshot(build) {
  try {
    const cache = await caches.open(SNAPSHOT_CACHE + build);
    const response = await cache.match(SNAPSHOT_KEY);
    return response ? new Uint8Array(await response.arrayBuffer()) : null;
  } catch {
    return null;  // no Cache Storage here (or it failed): the plain way
  }
}

async function startFromSnapshot(saved, start, info) {
  // The file system is not part of a snapshot (only the wasm memory is): fsInit writes the
  // packages again, for what is read later (idb_helper.js, modules imported lazily).
  const pyodide = await start({ _loadSnapshot: saved });
  // Every page started from one snapshot would draw the same random numbers (the retry
  // jitter of all devices in step): reseed from the OS's entropy. Then check that what the
  // snapshot should hold is there before trusting it.
  pyodide.runPython("import random, sys; random.seed()\n" +
    "assert 'pysync.client' in sys.modules and 'httpx' in sys.modules, 'an incomplete snapshot'");
  info.snapshot = "loaded";
  return pyodide;
}

async function storeSnapshot(build, bytes, info) {
  try {
    const cache = await caches.open(SNAPSHOT_CACHE + build);
    await cache.put(SNAPSHOT_KEY, new Response(bytes, {
      headers: { "content-type": "application/octet-stream" },
    }));
    info.snapshot = "stored";
    for (const name of await caches.keys()) {  // older builds' snapshots are of no use
      if (name.startsWith(SNAPSHOT_CACHE) && name !== SNAPSHOT_CACHE + build) {
        await caches.delete(name);
      }
    }
  } catch (e) {
    info.snapshot = `not stored: ${e.message}`;  // e.g. over quota: the next boot is plain
  }
}

async function registerWorker(info) {
  if (!("serviceWorker" in navigator)) {
    info.serviceWorker = "unsupported";
    return;
  }
  try {
    // The worker names its build in its source (server/static.py), so a new build is a new
    // worker; it caches that build's files and deletes older builds' caches (sw.js).
    const registration = await navigator.serviceWorker.register("/sw.js");
    // register() settles at once for a worker it already has: ask for the server's worker
    // now (a new build has a new one), not at the browser's next update check.
    await registration.update().catch(() => {});  // offline: the cached build stays
    // A new build's worker is installing (caching its files) or waiting: settled once it is
    // active, so that an offline reload from then on opens this build.
    const worker = registration.installing ?? registration.waiting ?? registration.active;
    await new Promise((resolve, reject) => {
      const check = () => {
        if (worker.state === "activated") resolve();
        if (worker.state === "redundant") reject(new Error("the new worker failed to install"));
      };
      worker.addEventListener("statechange", check);
      check();
    });
    info.serviceWorker = "active";
  } catch (e) {
    info.serviceWorker = `failed: ${e.message}`;  // the page works on, only not offline
  }
}
