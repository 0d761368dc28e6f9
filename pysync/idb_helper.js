// pysync's IndexedDB helper: the JavaScript side of pysync/idb.py, evaluated once per page
// (pyodide.code.run_js) from the installed package. Its value is the object at the end.
// It takes a whole batch of requests as one JSON string and answers a whole batch of reads as
// one JSON string: one crossing of the JS bridge per batch (design.md section 3).
// Checked by tests/unit/test_idb_helper.py (node --check and its exports); run by tests/e2e.
(() => {
  "use strict";
  const failure = (e) => JSON.stringify({
    name: (e && e.name) || "Error", message: (e && e.message) || String(e) });

  // [lo, loOpen, hi, hiOpen] -> IDBKeyRange; an empty range (lo > hi) -> "empty".
  const toRange = (q) => {
    if (q === null) return null;
    const [lo, loOpen, hi, hiOpen] = q;
    try {
      if (lo !== null && hi !== null) return IDBKeyRange.bound(lo, hi, loOpen, hiOpen);
      if (lo !== null) return IDBKeyRange.lowerBound(lo, loOpen);
      if (hi !== null) return IDBKeyRange.upperBound(hi, hiOpen);
      return null;
    } catch (e) {
      if (e.name === "DataError") return "empty";
      throw e;
    }
  };

  // Python's one completion callback: onDone(id, "") when committed, or the failure as JSON.
  let onDone = null;
  const setDone = (callback) => { onDone = callback; };

  // A write asked to be sliced is issued this many rows at a time (Tx.later): issuing a put
  // costs the page's thread tens of microseconds (the row is cloned), so a page of a few
  // thousand rows issued at once is a long task.
  const SLICE = 250;

  class Tx {
    constructor(db, stores, mode, id) {
      this.tx = db.transaction(stores.split(","), mode);
      this.failure = "";
      this.backlog = [];  // steps waiting for the slice before them (later)
      this.waiting = false;  // a slice's first request will issue the backlog
      this.announce = null;  // [BroadcastChannel, message] to post once committed
      this.tx.oncomplete = () => {
        // The database (and with it the channel) may have closed while this committed:
        // postMessage then throws, and the commit must still be reported, or its writer
        // waits forever. Nobody is left to tell in this tab.
        try {
          if (this.announce !== null) this.announce[0].postMessage(this.announce[1]);
        } catch (e) {
          // the channel was closed
        } finally {
          onDone(id, "");
        }
      };
      this.tx.onabort = () => onDone(id, this.failure || failure(
        this.tx.error || { name: "AbortError", message: "the transaction was aborted" }));
    }
    // [[store, "put" | "add" | "delete", [row or key, ...]], ...]; `sliced`: a big write is
    // issued a slice at a time (later), else all at once.
    write(opsJson, sliced = false) {
      const steps = [];
      for (const [store, verb, items] of JSON.parse(opsJson)) {
        if (!sliced || items.length <= SLICE) {
          steps.push([() => this.writeOps([[store, verb, items]]), false]);
          continue;
        }
        for (let i = 0; i < items.length; i += SLICE) {
          steps.push([() => this.writeOps([[store, verb, items.slice(i, i + SLICE)]]), true]);
        }
      }
      this.later(steps);
    }
    // Issues the requests and returns the first one (null if none).
    writeOps(ops) {
      let first = null;
      for (const [store, verb, items] of ops) {
        const os = this.tx.objectStore(store);
        for (const item of items) {
          let r;
          if (verb === "put") r = os.put(item);
          else if (verb === "add") r = os.add(item);
          else if (verb === "delete") r = os.delete(item);
          else throw new Error(`unknown write ${verb}`);
          if (first === null) first = r;
        }
      }
      return first;
    }
    // Issue steps ([step, slice]: a function that issues requests and returns the first one)
    // now, or after the steps waiting before them: requests keep the order they were asked
    // for in. A `slice` step lets the page's other tasks run before the step after it: that
    // one is issued from the slice's first request's success event (the transaction is
    // active there, and IndexedDB works through the slice meanwhile).
    later(steps) {
      this.backlog.push(...steps);
      if (!this.waiting) this.drain();
    }
    drain() {
      while (this.backlog.length) {
        const [step, slice] = this.backlog.shift();
        const first = step();
        if (slice && first !== null && this.backlog.length) {
          this.waiting = true;
          first.addEventListener("success", () => {
            this.waiting = false;
            try { this.drain(); } catch (e) { this.abort(e); }
          });
          return;
        }
      }
    }
    // [[kind, store, index, query, limit, reverse], ...]; kind: get | all | keys | count.
    // Calls back once, with every result, inside the last request's success event.
    read(requestsJson, callback) {
      const reqs = JSON.parse(requestsJson);
      this.later([[() => { this.readNow(reqs, callback); return null; }, false]]);
    }
    readNow(reqs, callback) {
      const out = new Array(reqs.length);
      let left = reqs.length + 1;
      const settle = (i, v) => {
        if (i >= 0) out[i] = v;
        if (--left === 0) {
          try { callback(JSON.stringify(out)); } catch (e) { this.abort(e); }
        }
      };
      reqs.forEach(([kind, store, index, q, limit, reverse], i) => {
        let src = this.tx.objectStore(store);
        if (index !== null) src = src.index(index);
        if (kind === "get") {
          const r = src.get(q);
          r.onsuccess = () => settle(i, r.result === undefined ? null : r.result);
          return;
        }
        const range = toRange(q);
        if (range === "empty") { settle(i, kind === "count" ? 0 : []); return; }
        if (kind === "count") {
          const r = src.count(range);
          r.onsuccess = () => settle(i, r.result);
        } else if (kind === "keys") {
          const r = src.getAllKeys(range, limit === null ? undefined : limit);
          r.onsuccess = () => settle(i, r.result);
        } else if (!reverse) {
          const r = src.getAll(range, limit === null ? undefined : limit);
          r.onsuccess = () => settle(i, r.result);
        } else {
          const rows = [];
          const r = src.openCursor(range, "prev");
          r.onsuccess = () => {
            const c = r.result;
            if (c && (limit === null || rows.length < limit)) { rows.push(c.value); c.continue(); }
            else settle(i, rows);
          };
        }
      });
      settle(-1);
    }
    // [[store, key, row or null], ...]: a read of each key that aborts the transaction as
    // stale unless it holds exactly that row (null: none). Issued before the writes of the
    // same transaction, so every check has run before any write can fail.
    expect(checks) {
      for (const [store, key, want] of checks) {
        const r = this.tx.objectStore(store).get(key);
        const wanted = JSON.stringify(want);
        r.onsuccess = () => {
          if (JSON.stringify(r.result === undefined ? null : r.result) !== wanted) {
            this.abort({ name: "StaleError", message: `${store} ${JSON.stringify(key)} changed` });
          }
        };
      }
    }
    abort(e) {
      if (e && !this.failure) this.failure = failure(e);
      try { this.tx.abort(); } catch (_) { /* already finished */ }
    }
  }

  // A whole checked write transaction in one call: [checks, ops] as for expect() and write().
  // Returns "" or the failure that prevented issuing it (the transaction is then aborted).
  function checkedWrite(db, stores, id, json, channel, message) {
    let tx = null;
    try {
      tx = new Tx(db, stores, "readwrite", id);
      if (channel) tx.announce = [channel, message];
      const [checks, ops] = JSON.parse(json);
      tx.expect(checks);
      tx.writeOps(ops);
      return "";
    } catch (e) {
      if (tx !== null) tx.abort(e);
      return failure(e);
    }
  }

  function open(name, version, upgradesJson, onClose) {
    const upgrades = JSON.parse(upgradesJson);
    return new Promise((resolve) => {
      let req;
      try { req = indexedDB.open(name, version); }
      catch (e) { resolve({ db: null, error: failure(e) }); return; }
      req.onupgradeneeded = (event) => {
        const db = req.result, tx = req.transaction;
        for (let v = event.oldVersion + 1; v <= event.newVersion; v++) {
          for (const [op, a, b, c, d] of upgrades[String(v)] || []) {
            if (op === "createStore") db.createObjectStore(a, b);
            else if (op === "deleteStore") db.deleteObjectStore(a);
            else if (op === "createIndex") tx.objectStore(a).createIndex(b, c, d);
            else if (op === "deleteIndex") tx.objectStore(a).deleteIndex(b);
            else throw new Error(`unknown upgrade step ${op}`);
          }
        }
      };
      req.onsuccess = () => {
        const db = req.result;
        // Another tab wants a newer version: step aside, or it stays blocked.
        db.onversionchange = () => { db.close(); onClose("versionchange"); };
        db.onclose = () => onClose("closed");
        resolve({ db, error: "" });
      };
      req.onerror = () => resolve({ db: null, error: failure(req.error) });
    });
  }

  function deleteDatabase(name) {
    return new Promise((resolve) => {
      const req = indexedDB.deleteDatabase(name);
      req.onsuccess = () => resolve("");
      req.onerror = () => resolve(failure(req.error));
      req.onblocked = () => {};
    });
  }

  function channel(name, onMessage) {
    const ch = new BroadcastChannel(name);
    ch.onmessage = (event) => onMessage(event.data);
    return ch;
  }

  return { Tx, checkedWrite, setDone, open, deleteDatabase, channel };
})()
