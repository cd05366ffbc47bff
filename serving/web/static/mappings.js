// The Mappings screen: mined feed paths → our nodes; keyboard first (j/k, a, r, c).
"use strict";
(() => {
  const { request, toast, el, typeahead, typing } = prodcat;
  const $ = (id) => document.getElementById(id);
  let rows = [], active = 0, busy = false;

  const pct = (x) => (x == null ? "–" : `${(100 * x).toFixed(0)}%`);

  function decisionCell(row) {
    const d = row.decision;
    if (!d) return el("td", { class: "muted", text: "–" });
    const other = d.path.join(" › ") !== row.path.join(" › ");  // approved to another node
    const text = d.status === "approved" ? (other ? `approved → ${d.path.join(" › ")}` : "approved") : "rejected";
    return el("td", { class: `decision ${d.status}`, text, title: d.decided_by ? `by ${d.decided_by}` : "" });
  }

  function draw() {
    $("empty").hidden = rows.length > 0;
    $("rows").replaceChildren(...rows.map((row, i) => {
      const tr = el("tr", { "data-key": row.key, tabIndex: -1 },
        el("td", {}, el("span", { class: "tag", text: row.feed })),
        el("td", { class: "path", text: row.feed_path.join(" › ") }),
        el("td", { class: "path", text: row.path.join(" › "), title: row.category_id }),
        el("td", { class: "num", text: row.support.toLocaleString() }),
        el("td", { class: "num", text: row.labelled.toLocaleString() }),
        el("td", { class: row.purity < 0.8 ? "num low" : "num", text: pct(row.purity) }),
        el("td", { class: "num", text: pct(row.agreement) }),
        decisionCell(row));
      tr.setAttribute("aria-selected", i === active ? "true" : "false");
      tr.addEventListener("click", () => select(i));
      return tr;
    }));
  }

  function select(i) {
    if (!rows.length) return;
    active = Math.max(0, Math.min(rows.length - 1, i));
    draw();
    const tr = $("rows").children[active];
    if (tr) tr.scrollIntoView({ block: "nearest" });
  }

  async function load() {
    const params = new URLSearchParams({ sort: $("sort").value, min_support: $("min-support").value || "1" });
    if ($("feed").value) params.set("feed", $("feed").value);
    try {
      const data = await request("GET", "/ui/api/mappings?" + params);
      const key = rows[active] && rows[active].key;
      rows = data.rows;
      const again = rows.findIndex((r) => r.key === key);
      active = again >= 0 ? again : Math.min(active, Math.max(0, rows.length - 1));
      $("count").textContent = `${data.total} feed paths`;
      $("approved-count").textContent = `${data.approved} approved`;
      draw();
      document.body.dataset.loaded = "1";
    } catch (e) { toast(e.message, true); }
  }

  async function act(fn) {
    if (busy) return;
    busy = true;
    try { await fn(); } catch (e) { toast(e.message, true); } finally { busy = false; }
  }

  function approve(categoryId) {
    const row = rows[active];
    if (!row) return;
    act(async () => {
      const body = { feed: row.feed, feed_path: row.feed_path };
      if (categoryId) body.category_id = categoryId;
      const done = await request("POST", "/ui/api/mappings/approve", body);
      toast(`Approved → ${done.path.join(" › ")}: ${done.labelled} labelled` + (done.protected ? `, ${done.protected} kept` : ""));
      select(active + 1);
      await load();
    });
  }

  function reject() {
    const row = rows[active];
    if (!row) return;
    act(async () => {
      await request("POST", "/ui/api/mappings/reject", { feed: row.feed, feed_path: row.feed_path });
      toast("Rejected");
      select(active + 1);
      await load();
    });
  }

  function choose() {
    if (!rows[active]) return;
    $("chooser").hidden = false;
    $("search").value = "";
    $("search").focus();
  }

  typeahead($("search"), $("results"),
    async (q) => (await request("GET", "/ui/api/categories?q=" + encodeURIComponent(q))).categories,
    (c) => el("li", { "data-category-id": c.category_id }, el("span", { text: c.path }), el("span", { class: "muted small", text: c.kind })),
    (c) => { $("chooser").hidden = true; $("search").blur(); approve(c.category_id); });
  $("search").addEventListener("keydown", (e) => { if (e.key === "Escape") $("chooser").hidden = true; });

  for (const id of ["feed", "sort", "min-support"]) $(id).addEventListener("change", () => { active = 0; load(); });

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e)) return;
    const keys = { j: () => select(active + 1), ArrowDown: () => select(active + 1),
                   k: () => select(active - 1), ArrowUp: () => select(active - 1),
                   a: () => approve(null), r: reject, c: choose };
    const fn = keys[e.key];
    if (fn) { e.preventDefault(); fn(); }
  });

  load();
})();
