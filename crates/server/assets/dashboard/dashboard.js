/*
 * rask dashboard, browser side.
 *
 * One script serves every dashboard page. index.html sets window.RASK = {prefix, page}; this
 * file builds the panels of that page, listens to the scheduler's snapshot stream (Server-Sent
 * Events at <prefix>/dashboard/events, one JSON snapshot every ~0.5 s) and updates the panels
 * in place.
 *
 * Kept cheap for clusters of 1,000+ workers and ~100k task-stream rectangles a minute:
 *  - the DOM is rendered at most once per animation frame, and not at all in a hidden tab
 *    (browsers pause requestAnimationFrame there); snapshots only replace `latest`;
 *  - rows are keyed (by worker address or prefix name) and reused, and a text, width or class
 *    is written only when it changed;
 *  - the task stream is drawn on a <canvas> and keeps only the rectangles still inside its
 *    window (MAX_RECTS at most).
 *
 * Everything that comes from the server goes into the page through textContent, never
 * innerHTML: task keys and worker names are arbitrary strings.
 */
(function () {
  "use strict";

  // ---- settings --------------------------------------------------------------------------

  /** Seconds of history the task stream shows: a sliding window ending at the latest snapshot. */
  const WINDOW_S = 20;
  /** Most task-stream rectangles kept; the oldest go first. */
  const MAX_RECTS = 20000;
  /** With no stream message for this long, poll state.json instead (e.g. behind a proxy that
   *  buffers event streams, or while the stream reconnects). */
  const STALE_MS = 5000;
  const POLL_MS = 2000;
  /** Wait before re-opening an EventSource the browser gave up on. It reconnects by itself
   *  after a network error, but not after an HTTP error status or a wrong content type. */
  const REOPEN_MS = 3000;

  /** The panels of each page, by page name (`__RASK_PAGE__`). */
  const PAGES = {
    "status": ["counters", "workers-memory", "nprocessing", "task-stream", "progress"],
    "workers": ["workers"],
    "tasks": ["task-stream"],
    "individual-task-stream": ["task-stream"],
    "individual-progress": ["progress"],
    "individual-workers-memory": ["workers-memory"],
    "individual-nprocessing": ["nprocessing"],
    "individual-workers": ["workers"],
    "individual-cluster-counters": ["counters"],
  };

  const config = readConfig();

  /** {prefix, page} from window.RASK, with fallbacks for a page served without the
   *  placeholders replaced (prefix "" and the page taken from the URL). */
  function readConfig() {
    const raw = window.RASK || {};
    let prefix = typeof raw.prefix === "string" ? raw.prefix : "";
    let page = typeof raw.page === "string" ? raw.page : "";
    if (prefix.indexOf("__RASK_") === 0) prefix = "";
    prefix = prefix.replace(/\/+$/, "");
    if (prefix && prefix[0] !== "/") prefix = "/" + prefix;
    if (!Object.prototype.hasOwnProperty.call(PAGES, page)) {
      const last = location.pathname.replace(/\/+$/, "").split("/").pop();
      page = Object.prototype.hasOwnProperty.call(PAGES, last) ? last : "status";
    }
    return {prefix, page, individual: page.indexOf("individual-") === 0};
  }

  // ---- formatting ------------------------------------------------------------------------

  function num(v) {
    const n = Number(v);
    return Number.isFinite(n) ? n : 0;
  }

  /** Integers are shown without thousands separators, so they read (and search) as sent. */
  function fmtInt(v) {
    return String(Math.round(num(v)));
  }

  /** "4.00" -> "4", "1.50" -> "1.5"; leaves "100" alone. */
  function trimZeros(s) {
    return s.indexOf(".") < 0 ? s : s.replace(/\.?0+$/, "");
  }

  /** Binary units, three significant digits: "512 B", "1.21 KiB", "100 MiB", "4 GiB". */
  function fmtBytes(v) {
    const n = num(v);
    if (Math.abs(n) < 1024) return Math.round(n) + " B";
    const units = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let x = n / 1024;
    let i = 0;
    while (Math.abs(x) >= 1024 && i < units.length - 1) {
      x /= 1024;
      i++;
    }
    const digits = Math.abs(x) >= 100 ? 0 : Math.abs(x) >= 10 ? 1 : 2;
    return trimZeros(x.toFixed(digits)) + " " + units[i];
  }

  function fmtDuration(seconds) {
    const s = num(seconds);
    if (s < 1e-3) return trimZeros((s * 1e6).toFixed(0)) + " µs";
    if (s < 1) return trimZeros((s * 1e3).toFixed(s < 0.1 ? 2 : 1)) + " ms";
    if (s < 60) return trimZeros(s.toFixed(2)) + " s";
    return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
  }

  function fmtPercent(v) {
    return trimZeros(num(v).toFixed(1)) + "%";
  }

  /** A fraction as a percentage in 0..100, rounded to 0.1 so unchanged values compare equal. */
  function percent(fraction) {
    const f = Math.min(Math.max(num(fraction), 0), 1);
    return Math.round(f * 1000) / 10;
  }

  /** A fraction as a CSS width. */
  function pct(fraction) {
    return percent(fraction) + "%";
  }

  /**
   * Natural order: "worker-2" before "worker-10", "…:9000" before "…:40001". The sort key
   * (lower case, digit runs zero-padded) is cached per string: sorting 1,000 addresses twice a
   * second then costs plain string comparisons.
   */
  const naturalKeys = new Map();
  function naturalKey(value) {
    const s = String(value);
    let key = naturalKeys.get(s);
    if (key === undefined) {
      if (naturalKeys.size > 20000) naturalKeys.clear();
      key = s.toLowerCase().replace(/\d+/g, (d) => d.replace(/^0+(?=\d)/, "").padStart(16, "0"));
      naturalKeys.set(s, key);
    }
    return key;
  }
  function compareNatural(a, b) {
    const x = naturalKey(a);
    const y = naturalKey(b);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  const compareThreads = (a, b) =>
    typeof a === "number" && typeof b === "number" ? a - b : compareNatural(a, b);

  // ---- colours ---------------------------------------------------------------------------

  const colourCache = new Map();

  /**
   * A stable colour per task prefix: a hash of the name picks hue, saturation and lightness,
   * so "inc" has the same colour on every page, in every browser, across restarts. Hues near
   * pure red are skipped: red means transfers and errors.
   */
  function prefixColour(name) {
    let c = colourCache.get(name);
    if (c) return c;
    let hash = 0x811c9dc5; // FNV-1a, 32 bit
    for (let i = 0; i < name.length; i++) {
      hash ^= name.charCodeAt(i);
      hash = Math.imul(hash, 0x01000193);
    }
    hash >>>= 0;
    const hue = 20 + (hash % 320);
    const sat = 48 + ((hash >>> 9) % 3) * 8;
    const light = 44 + ((hash >>> 13) % 3) * 6;
    const hsla = (a) => "hsla(" + hue + ", " + sat + "%, " + light + "%, " + a + ")";
    c = {solid: hsla(1), faded: hsla(0.5), light: hsla(0.28)};
    colourCache.set(name, c);
    return c;
  }

  /** Task-stream colours of the actions other than compute, and of erred tasks (as Dask). */
  const ACTION_COLOURS = {
    "transfer": "rgba(214, 39, 40, 0.4)",
    "disk-read": "rgba(255, 140, 0, 0.6)",
    "disk-write": "rgba(255, 140, 0, 0.6)",
    "deserialize": "rgba(110, 110, 110, 0.5)",
  };
  const ERRED_COLOUR = "rgba(25, 25, 25, 0.9)";

  /** The part of a key before its token, for rectangles that come without a prefix. */
  function keyPrefix(key) {
    const s = String(key).replace(/^[('"\s]+/, "");
    const m = /^(.*?)-[0-9a-f]{8,}/.exec(s);
    return m ? m[1] : s.split(/[-,'")]/)[0] || s;
  }

  // ---- DOM helpers -----------------------------------------------------------------------

  function h(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Writers that skip the write when nothing changed: an unchanged DOM costs no layout.
  function setText(node, text) {
    const only = node.firstChild;
    // Changing a text node's data in place is cheaper than replacing the node.
    if (only && only === node.lastChild && only.nodeType === Node.TEXT_NODE) {
      if (only.data !== text) only.data = text;
    } else if (node.textContent !== text) {
      node.textContent = text;
    }
  }
  function setStyle(node, prop, value) {
    if (node.style[prop] !== value) node.style[prop] = value;
  }
  function setTitle(node, text) {
    if (node.title !== text) node.title = text;
  }
  function setHidden(node, hidden) {
    if (node.hidden !== hidden) node.hidden = hidden;
  }

  /** A panel: <section id=…> with a header (title and a caption) and a body. */
  function panel(id, title) {
    const section = h("section", "panel");
    section.id = id;
    const head = h("header", "panel-head");
    const caption = h("span", "panel-caption");
    head.append(h("h2", "panel-title", title), caption);
    const body = h("div", "panel-body");
    section.append(head, body);
    return {section, head, caption, body};
  }

  /** With more rows than this, rows out of view are refreshed in turns (see KeyedRows). */
  const EAGER_ROWS = 150;

  /**
   * One DOM row per key inside `container`. `sync` creates rows for new keys, removes rows
   * whose key is gone, lets `update` refresh the rows, and moves nodes only when the order of
   * keys changed (existing rows are moved, never re-created).
   *
   * With a `viewport` (the element the rows scroll in) and more than EAGER_ROWS rows, rows out
   * of view are refreshed in turns, about EAGER_ROWS of them a sync, instead of all every
   * time: with 1,000 workers whose numbers change every half second, re-laying out the text
   * of every off-screen row is most of the cost of a frame. A row coming into view is
   * refreshed at once; off-screen rows are at most a few seconds old, so the whole list stays
   * in the DOM (searchable, readable by innerText) at a bounded cost.
   */
  class KeyedRows {
    constructor(container, create, viewport) {
      this.container = container;
      this.create = create; // (key, item) -> row object with an `el`
      this.rows = new Map();
      this.order = [];
      this.update = null; // the last update function, for rows that come into view
      this.turn = 0;
      this.rowOf = new WeakMap(); // element -> row
      this.observer = viewport && window.IntersectionObserver
        ? new IntersectionObserver((entries) => this.onView(entries), {root: viewport, rootMargin: "300px 0px"})
        : null;
    }

    onView(entries) {
      for (const entry of entries) {
        const row = this.rowOf.get(entry.target);
        if (!row) continue;
        row.visible = entry.isIntersecting;
        if (row.visible && row.stale && this.update) {
          row.stale = false;
          this.update(row, row.item);
        }
      }
    }

    sync(items, keyOf, update) {
      this.update = update;
      const keys = [];
      const wanted = new Set();
      const unique = [];
      for (const item of items) {
        const key = keyOf(item);
        if (wanted.has(key)) continue; // a duplicate key would need two rows
        wanted.add(key);
        keys.push(key);
        unique.push(item);
      }
      let reorder = keys.length !== this.order.length;
      for (const [key, row] of this.rows) {
        if (!wanted.has(key)) {
          if (this.observer) this.observer.unobserve(row.el);
          row.el.remove();
          this.rows.delete(key);
          reorder = true;
        }
      }
      const lazy = this.observer !== null && unique.length > EAGER_ROWS;
      const period = lazy ? Math.ceil(unique.length / EAGER_ROWS) : 1;
      const turn = this.turn++ % period;
      for (let i = 0; i < unique.length; i++) {
        const item = unique[i];
        let row = this.rows.get(keys[i]);
        if (!row) {
          row = this.create(keys[i], item);
          row.visible = false;
          this.rows.set(keys[i], row);
          this.rowOf.set(row.el, row);
          if (this.observer) this.observer.observe(row.el);
          reorder = true;
        } else if (this.order[i] !== keys[i]) {
          reorder = true;
        } else if (lazy && !row.visible && i % period !== turn) {
          row.item = item;
          row.stale = true;
          continue;
        }
        row.item = item;
        row.stale = false;
        update(row, item);
      }
      if (reorder) {
        const fragment = document.createDocumentFragment();
        for (const key of keys) fragment.appendChild(this.rows.get(key).el);
        this.container.appendChild(fragment);
      }
      this.order = keys;
    }
  }

  /** A panel's colour key in its head: [swatch class, text] pairs. */
  function legend(p, entries) {
    const key = h("span", "bars-key");
    for (const [cls, text] of entries) {
      const item = h("span", "bars-key-item");
      item.append(h("span", "swatch " + cls), document.createTextNode(text));
      key.append(item);
    }
    p.head.insertBefore(key, p.caption);
  }

  // ---- rendering schedule ----------------------------------------------------------------

  let frameRequested = false;
  const frameHooks = []; // called on every rendered frame

  function requestRender() {
    if (frameRequested) return;
    frameRequested = true;
    requestAnimationFrame(() => {
      frameRequested = false;
      for (const hook of frameHooks) hook();
    });
  }

  // ---- panel: cluster counters -----------------------------------------------------------

  function CountersPanel() {
    const p = panel("counters", "Cluster");
    const list = h("dl", "counters");
    // [data-counter, label, value from snapshot.counters]
    const fields = [
      ["workers", "workers", (c) => fmtInt(c.workers)],
      ["threads", "threads", (c) => fmtInt(c.threads)],
      ["clients", "clients", (c) => fmtInt(c.clients)],
      ["tasks", "tasks", (c) => fmtInt(c.tasks)],
      ["processing", "processing", (c) => fmtInt(c.processing)],
      ["queued", "queued", (c) => fmtInt(c.queued)],
      ["no_worker", "no worker", (c) => fmtInt(c.no_worker)],
      ["memory_tasks", "in memory", (c) => fmtInt(c.memory_tasks)],
      ["erred", "erred", (c) => fmtInt(c.erred)],
      ["bytes", "bytes stored", (c) => fmtBytes(c.bytes)],
      ["tasks_per_second", "tasks/s", (c) => trimZeros(num(c.tasks_per_second).toFixed(1))],
      ["helpers", "graph helpers busy", (c) => fmtInt(c.helpers_busy) + " / " + fmtInt(c.helpers)],
      ["transitions", "transitions", (c) => fmtInt(c.transitions)],
    ];
    const byKey = {};
    const cells = fields.map(([key, label]) => {
      const item = h("div", "counter");
      item.dataset.counter = key;
      const value = h("dd", "counter-value", "–");
      item.append(h("dt", "counter-label", label), value);
      list.append(item);
      byKey[key] = item;
      return {item, value};
    });
    p.body.append(list);

    return {
      el: p.section,
      update(snap) {
        const c = snap.counters || {};
        fields.forEach((field, i) => setText(cells[i].value, field[2](c)));
        byKey.erred.classList.toggle("bad", num(c.erred) > 0);
        byKey.no_worker.classList.toggle("attention", num(c.no_worker) > 0);
        // Without the navigation bar (individual page) the caption names the scheduler.
        if (config.individual) setText(p.caption, String(snap.address || ""));
      },
    };
  }

  // ---- panels: one bar per worker --------------------------------------------------------

  /**
   * Horizontal bars, one per worker, in natural address order.
   * spec.measure(w, scale) -> {a, b, mark, text, warn}: a and b are fractions of the track
   * (two stacked segments), mark an optional marker position; spec.hover(w) the hover text.
   */
  function WorkerBarsPanel(spec) {
    const p = panel(spec.id, spec.title);
    p.section.classList.add("panel-bars");
    if (spec.key) legend(p, spec.key);
    const list = h("div", "bars");
    const empty = h("div", "empty", "Waiting for data…");
    p.body.append(list, empty);

    const rows = new KeyedRows(list, (address) => {
      const el = h("div", "bar-row");
      el.dataset.worker = address;
      const label = h("div", "bar-label", address);
      const track = h("div", "bar-track");
      const a = h("span", "bar-seg bar-a");
      const b = h("span", "bar-seg bar-b");
      const mark = h("span", "bar-mark");
      track.append(a, b, mark);
      const value = h("div", "bar-value");
      el.append(label, track, value);
      const row = {el, a, b, mark, value};
      // The hover text is built when the pointer arrives, not on every update.
      el.addEventListener("mouseenter", () => {
        if (row.item) setTitle(el, spec.hover(row.item));
      });
      return row;
    }, p.body);

    return {
      el: p.section,
      update(snap) {
        const workers = (snap.workers || []).slice().sort((x, y) => compareNatural(x.address, y.address));
        const scale = spec.scale(workers);
        let longest = 0;
        for (const w of workers) longest = Math.max(longest, String(w.address).length);
        // Labels are 11.5 px monospace: ~6.9 px a character.
        const labelWidth = Math.ceil(Math.min(Math.max(longest, 8), 48) * 6.9 + 4) + "px";
        if (list.style.getPropertyValue("--label-width") !== labelWidth) list.style.setProperty("--label-width", labelWidth);
        rows.sync(workers, (w) => String(w.address), (row, w) => {
          const m = spec.measure(w, scale);
          // Transforms rather than widths: with 1,000 workers changing every half second,
          // bar lengths then cost no layout at all. Each segment spans the whole track and is
          // scaled down from its left edge; the second one is shifted past the first.
          const a = percent(m.a);
          setStyle(row.a, "transform", "scaleX(" + a / 100 + ")");
          setStyle(row.b, "transform", "translateX(" + a + "%) scaleX(" + percent(m.b) / 100 + ")");
          setHidden(row.mark, m.mark === undefined);
          if (m.mark !== undefined) setStyle(row.mark, "transform", "translateX(" + percent(m.mark) + "%)");
          setText(row.value, m.text);
          row.el.classList.toggle("warn", !!m.warn);
        });
        setText(p.caption, spec.caption(workers));
        setText(empty, "No workers");
        setHidden(empty, workers.length > 0);
      },
    };
  }

  function workerLabel(w) {
    const name = w.name === undefined || w.name === null ? "" : String(w.name);
    return name && name !== w.address ? w.address + " (" + name + ")" : String(w.address);
  }

  /** Bytes stored per worker, scaled as Dask does: against the largest memory limit. */
  function WorkersMemoryPanel() {
    return WorkerBarsPanel({
      id: "workers-memory",
      title: "Bytes stored per worker",
      key: [["bar-a", "stored"], ["bar-b", "rest of process"]],
      scale(workers) {
        let s = 1;
        for (const w of workers) s = Math.max(s, num(w.memory_limit), num(w.memory), num(w.nbytes));
        return s;
      },
      measure(w, scale) {
        const stored = num(w.nbytes);
        const rss = num(w.memory);
        const limit = num(w.memory_limit);
        return {
          a: stored / scale,
          b: Math.max(rss - stored, 0) / scale,
          text: fmtBytes(stored),
          // Past 80 % of the limit a worker pauses; flag it a little earlier than that.
          warn: limit > 0 && rss / limit >= 0.7,
        };
      },
      hover(w) {
        const rss = num(w.memory);
        const limit = num(w.memory_limit);
        return workerLabel(w) + "\nstored: " + fmtBytes(w.nbytes) + " in " + fmtInt(w.stored) +
          " results\nprocess memory: " + (rss > 0 ? fmtBytes(rss) : "not reported") +
          "\nmemory limit: " + (limit > 0 ? fmtBytes(limit) : "none");
      },
      caption(workers) {
        let total = 0;
        for (const w of workers) total += num(w.nbytes);
        return "total " + fmtBytes(total);
      },
    });
  }

  /** Tasks processing per worker; the tick marks the worker's thread count. */
  function ProcessingPanel() {
    return WorkerBarsPanel({
      id: "nprocessing",
      title: "Tasks processing per worker",
      key: [["bar-a", "processing"], ["bar-mark-key", "threads"]],
      scale(workers) {
        let s = 1;
        for (const w of workers) s = Math.max(s, num(w.processing), num(w.nthreads));
        return s;
      },
      measure(w, scale) {
        const n = num(w.processing);
        const threads = num(w.nthreads);
        return {
          a: n / scale,
          mark: threads > 0 ? threads / scale : undefined,
          text: fmtInt(n),
        };
      },
      hover(w) {
        return workerLabel(w) + "\nprocessing: " + fmtInt(w.processing) + " on " + fmtInt(w.nthreads) + " threads";
      },
      caption(workers) {
        let total = 0;
        for (const w of workers) total += num(w.processing);
        return "total " + fmtInt(total);
      },
    });
  }

  // ---- panel: workers table --------------------------------------------------------------

  function WorkersPanel() {
    const p = panel("workers-panel", "Workers");
    p.section.classList.add("panel-table");
    const wrap = h("div", "table-wrap");
    const table = h("table", "workers-table");
    table.id = "workers-table";
    const thead = h("thead");
    const headRow = h("tr");
    const tbody = h("tbody");
    const empty = h("div", "empty", "Waiting for data…");

    // sort: the value the column sorts by; numeric columns sort descending first.
    const columns = [
      {key: "address", label: "Address", sort: (w) => String(w.address)},
      {key: "name", label: "Name", sort: (w) => String(w.name === undefined ? "" : w.name)},
      {key: "nthreads", label: "Threads", numeric: true, sort: (w) => num(w.nthreads)},
      {key: "memory", label: "Memory", numeric: true, sort: (w) => num(w.memory)},
      {key: "cpu", label: "CPU", numeric: true, sort: (w) => num(w.cpu)},
      {key: "processing", label: "Processing", numeric: true, sort: (w) => num(w.processing)},
      {key: "stored", label: "Stored tasks", numeric: true, sort: (w) => num(w.stored)},
      {key: "nbytes", label: "Bytes stored", numeric: true, sort: (w) => num(w.nbytes)},
    ];
    let sortKey = "address";
    let sortDir = 1;
    let last = null;

    // A fixed table layout (column widths from <col>, see the stylesheet): an automatic
    // one measures every cell of every row again whenever one of them changes.
    const colgroup = h("colgroup");
    for (const col of columns) colgroup.append(h("col", "col-" + col.key));
    table.append(colgroup);

    for (const col of columns) {
      const th = h("th", col.numeric ? "num" : "", col.label);
      th.dataset.sort = col.key;
      th.tabIndex = 0;
      th.title = "Sort by " + col.label.toLowerCase();
      const activate = () => {
        if (sortKey === col.key) sortDir = -sortDir;
        else {
          sortKey = col.key;
          sortDir = col.numeric ? -1 : 1;
        }
        markSorted();
        if (last) update(last);
      };
      th.addEventListener("click", activate);
      th.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          activate();
        }
      });
      headRow.append(th);
    }
    thead.append(headRow);
    table.append(thead, tbody);
    wrap.append(table, empty);
    p.body.append(wrap);

    function markSorted() {
      for (const th of headRow.children) {
        const on = th.dataset.sort === sortKey;
        th.classList.toggle("sorted", on);
        th.classList.toggle("desc", on && sortDir < 0);
        th.setAttribute("aria-sort", on ? (sortDir < 0 ? "descending" : "ascending") : "none");
      }
    }
    markSorted();

    const rows = new KeyedRows(tbody, (address) => {
      const el = h("tr");
      el.dataset.worker = address;
      const td = (cls) => {
        const cell = h("td", cls);
        el.append(cell);
        return cell;
      };
      const addressCell = td("addr");
      const addressText = h("span", "addr-text", address);
      const status = h("span", "status-tag");
      addressCell.append(addressText, status);
      const name = td("name");
      const threads = td("num");
      const memCell = td("num mem");
      const memText = h("span", "mem-text");
      const memBar = h("span", "minibar");
      const memFill = h("span", "minibar-fill");
      memBar.append(memFill);
      memCell.append(memText, memBar);
      return {
        el, status, name, threads, memText, memBar, memFill,
        cpu: td("num"), processing: td("num"), stored: td("num"), nbytes: td("num"),
      };
    }, p.body);

    function update(snap) {
      last = snap;
      const col = columns.find((c) => c.key === sortKey) || columns[0];
      const workers = (snap.workers || []).slice().sort((a, b) => {
        const x = col.sort(a);
        const y = col.sort(b);
        const c = col.numeric ? x - y : compareNatural(x, y);
        return c * sortDir || compareNatural(a.address, b.address);
      });
      let threads = 0;
      let memory = 0;
      let limits = 0;
      let stored = 0;
      for (const w of workers) {
        threads += num(w.nthreads);
        memory += num(w.memory);
        limits += num(w.memory_limit);
        stored += num(w.nbytes);
      }
      rows.sync(workers, (w) => String(w.address), (row, w) => {
        const rss = num(w.memory);
        const limit = num(w.memory_limit);
        const running = !w.status || w.status === "running";
        setText(row.status, running ? "" : String(w.status));
        setHidden(row.status, running);
        row.el.classList.toggle("not-running", !running);
        setText(row.name, w.name === undefined || w.name === null ? "" : String(w.name));
        setText(row.threads, fmtInt(w.nthreads));
        // memory 0 means "not reported yet"; memory_limit 0 means "no limit".
        const used = rss > 0 ? fmtBytes(rss) : "–";
        setText(row.memText, limit > 0 ? used + " / " + fmtBytes(limit) : used);
        setHidden(row.memBar, limit <= 0);
        if (limit > 0) {
          const f = rss / limit;
          setStyle(row.memFill, "width", pct(f));
          row.memFill.classList.toggle("warn", f >= 0.6 && f < 0.8);
          row.memFill.classList.toggle("bad", f >= 0.8);
        }
        setText(row.cpu, fmtPercent(w.cpu));
        setText(row.processing, fmtInt(w.processing));
        setText(row.stored, fmtInt(w.stored));
        setText(row.nbytes, fmtBytes(w.nbytes));
      });
      setText(p.caption, workers.length + (workers.length === 1 ? " worker · " : " workers · ") +
        threads + " threads · memory " + fmtBytes(memory) + (limits > 0 ? " / " + fmtBytes(limits) : "") +
        " · stored " + fmtBytes(stored));
      setText(empty, "No workers");
      setHidden(empty, workers.length > 0);
    }

    return {el: p.section, update};
  }

  // ---- panel: progress -------------------------------------------------------------------

  function ProgressPanel() {
    const p = panel("progress", "Progress");
    p.section.classList.add("panel-progress");
    legend(p, [["seg-memory", "in memory"], ["seg-forgotten", "forgotten"],
      ["seg-erred", "erred"], ["seg-processing", "processing"]]);
    const list = h("div", "progress-list");
    const empty = h("div", "empty", "Waiting for data…");
    p.body.append(list, empty);

    const rows = new KeyedRows(list, (name) => {
      const el = h("div", "progress-row");
      el.dataset.prefix = name;
      const colour = prefixColour(name);
      const bar = h("div", "progress-bar");
      // Segments left to right: in memory, forgotten (done, result released), erred, processing;
      // the rest of the track (waiting, queued, no-worker, released) stays empty.
      const seg = (cls, background) => {
        const s = h("span", "seg " + cls);
        if (background) s.style.backgroundColor = background;
        bar.append(s);
        return s;
      };
      const memory = seg("seg-memory", colour.solid);
      const forgotten = seg("seg-forgotten", colour.faded);
      const erred = seg("seg-erred");
      const processing = seg("seg-processing", colour.light);
      const count = h("div", "progress-count");
      el.append(h("div", "progress-name", name), bar, count);
      return {el, memory, forgotten, erred, processing, count};
    });

    return {
      el: p.section,
      update(snap) {
        const prefixes = snap.prefixes || [];
        let allDone = 0;
        let allTotal = 0;
        let allErred = 0;
        rows.sync(prefixes, (x) => String(x.name), (row, x) => {
          const n = (k) => num(x[k]);
          const total = n("released") + n("waiting") + n("queued") + n("no-worker") +
            n("processing") + n("memory") + n("erred") + n("forgotten");
          const done = n("memory") + n("erred") + n("forgotten");
          const t = total || 1;
          allDone += done;
          allTotal += total;
          allErred += n("erred");
          setStyle(row.memory, "width", pct(n("memory") / t));
          setStyle(row.forgotten, "width", pct(n("forgotten") / t));
          setStyle(row.erred, "width", pct(n("erred") / t));
          setStyle(row.processing, "width", pct(n("processing") / t));
          setText(row.count, done + " / " + total + (n("erred") > 0 ? " · " + n("erred") + " erred" : ""));
          row.el.classList.toggle("has-erred", n("erred") > 0);
          setTitle(row.el, x.name + "\nin memory: " + n("memory") + " (" + fmtBytes(n("nbytes")) +
            ")\nprocessing: " + n("processing") + "\nqueued: " + n("queued") + "\nwaiting: " +
            n("waiting") + "\nno-worker: " + n("no-worker") + "\nerred: " + n("erred") +
            "\nforgotten: " + n("forgotten") + "\nreleased: " + n("released"));
        });
        setText(p.caption, allDone + " / " + allTotal + " done" + (allErred ? " · " + allErred + " erred" : ""));
        setText(empty, "No tasks");
        setHidden(empty, prefixes.length > 0);
      },
    };
  }

  // ---- panel: task stream ----------------------------------------------------------------

  function TaskStreamPanel() {
    const p = panel("task-stream", "Task Stream");
    p.section.classList.add("panel-stream");
    const stage = h("div", "stream-stage");
    const canvas = h("canvas", "stream-canvas");
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", "Task stream: one row per worker thread, time on the x axis");
    const empty = h("div", "empty stream-empty", "Waiting for data…");
    const tip = h("div", "tooltip");
    tip.hidden = true;
    stage.append(canvas, empty, tip);
    const legend = h("ul", "legend");
    p.body.append(stage, legend);
    const ctx = canvas.getContext("2d");

    // Plot geometry in CSS pixels: a small left margin, the time axis at the bottom.
    const PAD_L = 4;
    const PAD_R = 12;
    const AXIS_H = 20;

    let rects = []; // kept rectangles, in arrival order
    let end = 0; // scheduler time at the right edge
    let received = false; // any snapshot yet
    let workers = []; // latest workers (they reserve lanes for idle threads)
    let layout = null; // lanes; recomputed when rects or workers change
    let layoutDirty = true;
    let dirty = true;
    let width = 0;
    let height = 0;
    let dpr = 1;
    let geometry = null; // of the last drawing, for hit-testing
    let pointer = null; // mouse position over the canvas, CSS pixels
    let pointerDirty = false;
    let legendKey = "";
    let hovered = undefined;

    /** Called for every snapshot (even in a hidden tab) so the store stays bounded. */
    function ingest(snap, replace) {
      const now = num(snap.time) || end;
      const incoming = (snap.stream && snap.stream.rects) || [];
      const cutoff = now - WINDOW_S;
      // The first message of a connection (and a polled state.json) holds all the recent
      // rectangles the server has: it replaces, where later messages only add.
      if (replace) rects = [];
      for (const r of incoming) {
        if (!(num(r.stop) >= cutoff)) continue;
        r.lane = r.worker + "\u0000" + r.thread;
        r.prefix = r.prefix || keyPrefix(r.key);
        r.colour = r.erred ? ERRED_COLOUR : ACTION_COLOURS[r.action] || prefixColour(r.prefix).solid;
        rects.push(r);
      }
      // Rectangles arrive roughly in end order, but not exactly: filter rather than shift.
      if (rects.length && (rects[0].stop < cutoff || rects.length > MAX_RECTS)) {
        rects = rects.filter((r) => r.stop >= cutoff);
        if (rects.length > MAX_RECTS) rects = rects.slice(rects.length - MAX_RECTS);
      }
      end = now;
      received = true;
      layoutDirty = true;
      dirty = true;
    }

    function update(snap) {
      workers = snap.workers || [];
      layoutDirty = true;
      dirty = true;
    }

    /**
     * Lanes: workers in natural address order, within a worker its threads in numeric order.
     * A worker gets at least `nthreads` lanes, so rows do not jump as threads become busy;
     * threads and workers with nothing left in the window disappear.
     */
    function computeLayout() {
      const threads = new Map();
      for (const r of rects) {
        let set = threads.get(r.worker);
        if (!set) threads.set(r.worker, (set = new Set()));
        set.add(r.thread);
      }
      const nthreads = new Map();
      for (const w of workers) nthreads.set(w.address, num(w.nthreads));
      const addresses = Array.from(new Set([...nthreads.keys(), ...threads.keys()])).sort(compareNatural);
      const laneOf = new Map();
      const lanes = [];
      const bands = [];
      for (const address of addresses) {
        const first = lanes.length;
        const ts = threads.has(address) ? Array.from(threads.get(address)).sort(compareThreads) : [];
        for (const t of ts) {
          laneOf.set(address + "\u0000" + t, lanes.length);
          lanes.push({worker: address, thread: t});
        }
        const slots = Math.max(ts.length, nthreads.get(address) || 0);
        while (lanes.length < first + slots) lanes.push({worker: address, thread: null});
        if (lanes.length > first) bands.push({first, count: lanes.length - first});
      }
      return {laneOf, lanes, bands};
    }

    function resize() {
      const box = stage.getBoundingClientRect();
      dpr = window.devicePixelRatio || 1;
      width = Math.floor(box.width);
      height = Math.floor(box.height);
      canvas.width = Math.max(1, Math.round(width * dpr));
      canvas.height = Math.max(1, Math.round(height * dpr));
      dirty = true;
      requestRender();
    }
    if (window.ResizeObserver) new ResizeObserver(resize).observe(stage);
    else window.addEventListener("resize", resize);

    /** Tick spacing in seconds: the first of 1, 2, 5, 10 s that leaves room for a label. */
    function tickStep(pxPerSecond) {
      for (const s of [1, 2, 5, 10]) if (s * pxPerSecond >= 64) return s;
      return WINDOW_S;
    }

    function draw() {
      if (layoutDirty) {
        layout = computeLayout();
        layoutDirty = false;
      }
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, width, height);
      if (width < 20 || height < AXIS_H + 10) return;
      const plotW = width - PAD_L - PAD_R;
      const plotH = height - AXIS_H;
      const t0 = end - WINDOW_S;
      const sx = plotW / WINDOW_S;
      const laneH = plotH / Math.max(layout.lanes.length, 1);
      geometry = {plotW, plotH, t0, sx, laneH};

      // Alternate worker bands shaded, so a worker's threads read as a group.
      ctx.fillStyle = "#f3f4f6";
      layout.bands.forEach((band, i) => {
        if (i % 2) ctx.fillRect(PAD_L, band.first * laneH, plotW, band.count * laneH);
      });

      // Time grid and axis labels (seconds before the latest snapshot).
      const step = tickStep(sx);
      ctx.font = "11px system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif";
      ctx.textBaseline = "top";
      for (let s = 0; s <= WINDOW_S; s += step) {
        const x = Math.round(PAD_L + plotW - s * sx) + 0.5;
        ctx.fillStyle = "#e5e7eb";
        ctx.fillRect(x - 0.5, 0, 1, plotH);
        ctx.fillStyle = "#6b7280";
        ctx.textAlign = s === 0 ? "right" : s >= WINDOW_S ? "left" : "center";
        ctx.fillText(s === 0 ? "now" : "−" + s + " s", s === 0 ? x + PAD_R - 2 : x, plotH + 5);
      }
      ctx.fillStyle = "#9ca3af";
      ctx.fillRect(PAD_L, plotH, plotW, 1);

      // Rectangles, bucketed by colour: one path and one fill per colour is much cheaper than
      // a fillRect (and a colour parse) per rectangle at 20k rectangles.
      const gap = laneH >= 4 ? laneH * 0.1 : 0;
      const rectH = Math.max(laneH - 2 * gap, 1);
      const buckets = new Map();
      const prefixes = new Set();
      const others = new Set();
      let shown = 0;
      for (const r of rects) {
        const lane = layout.laneOf.get(r.lane);
        if (lane === undefined) continue;
        let x1 = (r.start - t0) * sx;
        let x2 = (r.stop - t0) * sx;
        if (x2 < 0 || x1 > plotW) continue;
        if (x1 < 0) x1 = 0;
        if (x2 > plotW) x2 = plotW;
        let bucket = buckets.get(r.colour);
        if (!bucket) buckets.set(r.colour, (bucket = []));
        bucket.push(PAD_L + x1, lane * laneH + gap, Math.max(x2 - x1, 1));
        const compute = r.action === "compute" || !r.action;
        if (compute) shown++;
        if (r.erred) others.add("erred");
        else if (compute) prefixes.add(r.prefix);
        else others.add(r.action.indexOf("disk") === 0 ? "disk" : r.action);
      }
      // Compute first, then transfers and disk on top, erred tasks last so they stand out.
      const order = Array.from(buckets.keys()).sort((a, b) => rank(a) - rank(b));
      for (const colour of order) {
        const b = buckets.get(colour);
        ctx.fillStyle = colour;
        ctx.beginPath();
        for (let i = 0; i < b.length; i += 3) ctx.rect(b[i], b[i + 1], b[i + 2], rectH);
        ctx.fill();
      }

      setText(p.caption, shown + (shown === 1 ? " task" : " tasks") + " in the last " + WINDOW_S + " s" +
        (rects.length >= MAX_RECTS ? " (the latest " + MAX_RECTS + " kept)" : ""));
      setText(empty, received ? "No tasks in the last " + WINDOW_S + " s" : "Waiting for data…");
      setHidden(empty, rects.length > 0);
      updateLegend(prefixes, others);
    }

    function rank(colour) {
      if (colour === ERRED_COLOUR) return 3;
      for (const k in ACTION_COLOURS) if (ACTION_COLOURS[k] === colour) return 1;
      return 0;
    }

    /** The legend lists the prefixes (and other actions) drawn now; rebuilt only on change. */
    const legendRows = new KeyedRows(legend, (key, item) => {
      const el = h("li", "legend-item");
      // data-legend, not data-prefix: `[data-prefix=…]` finds progress rows only.
      el.dataset.legend = item.label;
      const swatch = h("span", "swatch");
      swatch.style.backgroundColor = item.colour;
      el.append(swatch, h("span", "legend-name", item.label));
      return {el};
    });
    const OTHER_LEGEND = {
      "transfer": ACTION_COLOURS["transfer"],
      "disk": ACTION_COLOURS["disk-read"],
      "deserialize": ACTION_COLOURS["deserialize"],
      "erred": ERRED_COLOUR,
    };
    function updateLegend(prefixes, others) {
      const names = Array.from(prefixes).sort(compareNatural);
      const extra = Object.keys(OTHER_LEGEND).filter((k) => others.has(k));
      const key = names.join("\u0000") + "\u0001" + extra.join("\u0000");
      if (key === legendKey) return;
      legendKey = key;
      const items = names.map((n) => ({key: "p:" + n, label: n, colour: prefixColour(n).solid}))
        .concat(extra.map((n) => ({key: "o:" + n, label: n, colour: OTHER_LEGEND[n]})));
      // Keys "p:<prefix>" and "o:<action>" keep a prefix named like an action apart.
      legendRows.sync(items, (i) => i.key, () => {});
    }

    // ---- hover: the rectangle under the mouse, shown in a tooltip div ----

    canvas.addEventListener("mousemove", (e) => {
      const box = canvas.getBoundingClientRect();
      pointer = {x: e.clientX - box.left, y: e.clientY - box.top};
      pointerDirty = true;
      requestRender();
    });
    canvas.addEventListener("mouseleave", () => {
      pointer = null;
      pointerDirty = true;
      requestRender();
    });

    function hitTest() {
      const g = geometry;
      if (!pointer || !g || !layout || pointer.y >= g.plotH || pointer.x < PAD_L) return null;
      const lane = layout.lanes[Math.floor(pointer.y / g.laneH)];
      if (!lane) return null;
      if (lane.thread === null) return {lane};
      const laneKey = lane.worker + "\u0000" + lane.thread;
      const t = g.t0 + (pointer.x - PAD_L) / g.sx;
      const tolerance = 3 / g.sx; // 3 px, so 1 px wide rectangles can be hovered
      let best = null;
      let bestDistance = Infinity;
      for (const r of rects) {
        if (r.lane !== laneKey) continue;
        const d = t < r.start ? r.start - t : t > r.stop ? t - r.stop : 0;
        // "<=": of overlapping rectangles take the later one, drawn on top.
        if (d <= tolerance && d <= bestDistance) {
          best = r;
          bestDistance = d;
        }
      }
      return {lane, rect: best};
    }

    function hover() {
      const hit = hitTest();
      if (!hit) {
        setHidden(tip, true);
        hovered = undefined;
        return;
      }
      const target = hit.rect || hit.lane;
      if (target !== hovered) {
        hovered = target;
        tip.textContent = "";
        const line = (cls, text) => tip.append(h("div", cls, text));
        const r = hit.rect;
        if (r) {
          line("tip-key", String(r.key));
          line("tip-row", (r.action || "compute") + (r.erred ? " · erred" : "") + " · " + fmtDuration(r.stop - r.start));
          line("tip-row", "worker " + r.worker + " · thread " + r.thread);
          line("tip-row tip-muted", "ended " + fmtDuration(Math.max(end - r.stop, 0)) + " ago");
        } else {
          line("tip-row", "worker " + hit.lane.worker + (hit.lane.thread === null ? "" : " · thread " + hit.lane.thread));
        }
      }
      setHidden(tip, false);
      // Beside the pointer, flipped to the other side near the right and bottom edges.
      const tw = tip.offsetWidth;
      const th = tip.offsetHeight;
      let x = pointer.x + 14;
      let y = pointer.y + 14;
      if (x + tw > width - 4) x = Math.max(4, pointer.x - tw - 14);
      if (y + th > height - 4) y = Math.max(4, pointer.y - th - 14);
      setStyle(tip, "transform", "translate(" + Math.round(x) + "px, " + Math.round(y) + "px)");
    }

    function frame() {
      const redraw = dirty;
      if (dirty) {
        draw();
        dirty = false;
      }
      if (pointer ? redraw || pointerDirty : pointerDirty) hover();
      pointerDirty = false;
    }

    return {el: p.section, ingest, update, frame, resize};
  }

  // ---- connection ------------------------------------------------------------------------

  /**
   * Snapshots from the event stream, with state.json polled while the stream is silent.
   * Calls onSnapshot(snapshot, replaceRects) and onState(state) with state one of
   * "connecting", "live", "polling", "down".
   */
  function connect(onSnapshot, onState) {
    const base = config.prefix + "/dashboard/";
    let source = null;
    let fresh = true; // the next stream message is the first of its connection
    let lastMessage = Date.now();
    let lastPoll = 0;
    let polling = false;
    let streamUp = false;

    function parse(text) {
      try {
        const snap = JSON.parse(text);
        return snap && typeof snap === "object" ? snap : null;
      } catch (e) {
        console.warn("rask dashboard: bad snapshot", e);
        return null;
      }
    }

    function open() {
      if (typeof EventSource === "undefined") return; // polling only
      source = new EventSource(base + "events");
      source.onopen = () => {
        fresh = true;
      };
      source.onmessage = (event) => {
        const snap = parse(event.data);
        if (!snap) return;
        lastMessage = Date.now();
        streamUp = true;
        onSnapshot(snap, fresh);
        fresh = false;
        onState("live");
      };
      source.onerror = () => {
        streamUp = false;
        onState("down");
        if (source.readyState === EventSource.CLOSED) {
          source.close();
          setTimeout(open, REOPEN_MS);
        }
      };
    }

    function poll() {
      if (polling) return;
      polling = true;
      lastPoll = Date.now();
      fetch(base + "state.json", {cache: "no-store"})
        .then((response) => (response.ok ? response.text() : Promise.reject(new Error(response.status))))
        .then((text) => {
          const snap = parse(text);
          if (!snap) return;
          onSnapshot(snap, true);
          if (!streamUp || Date.now() - lastMessage > STALE_MS) onState("polling");
        })
        .catch(() => onState("down"))
        .then(() => {
          polling = false;
        });
    }

    setInterval(() => {
      const now = Date.now();
      if (now - lastMessage > STALE_MS && now - lastPoll >= POLL_MS) poll();
    }, 1000);
    onState("connecting");
    open();
  }

  // ---- page ------------------------------------------------------------------------------

  const FACTORIES = {
    "counters": CountersPanel,
    "workers-memory": WorkersMemoryPanel,
    "nprocessing": ProcessingPanel,
    "task-stream": TaskStreamPanel,
    "progress": ProgressPanel,
    "workers": WorkersPanel,
  };

  function start() {
    const page = config.page;
    document.title = "rask dashboard — " + page;
    document.body.dataset.page = page;
    document.body.classList.add(config.individual ? "individual" : "full");

    const nav = document.getElementById("topnav");
    let badge = document.getElementById("connection");
    const addressEl = document.getElementById("scheduler-address");
    if (config.individual) {
      // No navigation bar in an iframe; a floating badge shows only while disconnected.
      if (nav) nav.remove();
      badge = h("span", "badge floating");
      document.body.append(badge);
    } else if (nav) {
      const active = nav.querySelector('[data-nav="' + page + '"]');
      if (active) {
        active.classList.add("active");
        active.setAttribute("aria-current", "page");
      }
    }

    const app = document.getElementById("app");
    const panels = {};
    for (const name of PAGES[page]) panels[name] = FACTORIES[name]();
    if (page === "status") {
      // Dask's layout: worker bars on the left, the task stream over the progress on the right.
      const left = h("div", "column column-side");
      const right = h("div", "column column-main");
      left.append(panels["counters"].el, panels["workers-memory"].el, panels["nprocessing"].el);
      right.append(panels["task-stream"].el, panels["progress"].el);
      app.append(left, right);
    } else {
      for (const name of PAGES[page]) app.append(panels[name].el);
    }
    app.classList.add("layout-" + (page === "status" ? "status" : "single"));

    const list = Object.values(panels);
    const stream = panels["task-stream"];
    let latest = null;
    let snapshotDirty = false;

    frameHooks.push(() => {
      if (snapshotDirty && latest) {
        snapshotDirty = false;
        // The task stream first: drawing text on its canvas resolves a font, which would
        // otherwise force the style of all the DOM updates below in the middle of the frame.
        if (stream) stream.update(latest);
        if (stream) stream.frame();
        for (const panel of list) if (panel !== stream) panel.update(latest);
        if (addressEl) setText(addressEl, String(latest.address || ""));
      } else if (stream) {
        stream.frame();
      }
    });
    if (stream) stream.resize();

    const STATES = {
      connecting: "connecting…",
      live: "live",
      polling: "live (polling)",
      down: "disconnected — retrying",
    };
    connect(
      (snap, replace) => {
        latest = snap;
        if (stream) stream.ingest(snap, replace);
        snapshotDirty = true;
        requestRender();
      },
      (state) => {
        if (!badge) return;
        setText(badge, STATES[state]);
        if (badge.dataset.state !== state) badge.dataset.state = state;
        setTitle(badge, state === "down" ? "The connection to the scheduler is lost; the browser keeps retrying." : "");
      },
    );
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
