// The service worker: opens the app offline, from this build's files only.
//
// The server writes the build's version and its file list in below (server/static.py), so
// every build has its own worker source, and the browser installs a new worker when the build
// changes. Installing caches every file of the build in "pysync-<build>" (and fails, to be
// retried on the next load, if the server's build changed meanwhile); activating deletes every
// other build's caches (the app shell and the Pyodide snapshots of boot.js).
//
// Requests for those files go to the network first, so an online load always gets the
// server's current build, whole; only when the network fails is the cached build served,
// whole too. Nothing else is touched (the sync API, other pages): the browser handles it as
// if there were no worker. Only our own origin's requests are ever handled.
const BUILD = "__PYSYNC_BUILD__";
const FILES = [/* __PYSYNC_FILES__ */];
const CACHE = `pysync-${BUILD}`;
const OURS = new Set(FILES);

self.addEventListener("install", (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    // "no-cache": this build's bytes from the server (revalidated), not an older HTTP copy.
    await Promise.all(FILES.map(async (url) => {
      const response = await fetch(url, { cache: "no-cache" });
      if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
      await cache.put(url, response);
    }));
    const cached = await (await cache.match("/build.json")).json();
    if (cached.build !== BUILD) {
      await caches.delete(CACHE);
      throw new Error(`the server's build changed to ${cached.build} while installing`);
    }
    await self.skipWaiting();
  })());
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith("pysync-") && !name.endsWith(`-${BUILD}`)) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  if (!OURS.has(url.pathname)) return;
  event.respondWith(networkFirst(event.request, url.pathname));
});

async function networkFirst(request, key) {
  try {
    return await fetch(request);
  } catch (offline) {
    const cached = await caches.match(key, { cacheName: CACHE });
    if (!cached) throw offline;
    // Marked, so the page (boot.js's pysyncBoot.offline) and tests can tell it came from here.
    const headers = new Headers(cached.headers);
    headers.set("x-pysync-cached-build", BUILD);
    return new Response(cached.body, { status: cached.status, statusText: cached.statusText,
                                       headers });
  }
}
