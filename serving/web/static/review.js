// The Review queue: labels the firewall holds; keyboard first (y, s, /, j/k).
"use strict";
(() => {
  const { request, toast, el, typeahead, typing } = prodcat;
  const $ = (id) => document.getElementById(id);
  let rows = [], active = 0, busy = false;

  const pct = (x) => (x == null ? "–" : `${(100 * x).toFixed(0)}%`);
  const text = (id, value) => { $(id).textContent = value == null ? "" : String(value); };

  function counts(table, groups) {
    $(table).replaceChildren(...Object.entries(groups).map(([name, c]) =>
      el("tr", {}, el("td", { text: name }),
        el("td", { class: "num", text: String(c.held || 0) }),
        el("td", { class: "num", text: String(c.confirmed || 0) }))));
  }

  function show() {
    const row = rows[active];
    $("empty").hidden = !!row;
    $("work").hidden = !row;
    if (!row) return;
    const p = row.product || {};
    text("p-title", p.title || row.product_id);
    text("p-brand", p.brand);
    text("p-feed", p.feed);
    text("p-path", (p.category_path || []).join(" \u203a "));
    text("p-description", p.description);
    text("p-id", row.product_id);
    text("p-flagged", row.flagged_by);
    text("p-position", `${active + 1} of ${rows.length}`);
    const img = $("p-image");
    img.hidden = !p.image_url;
    $("p-noimage").hidden = !!p.image_url;
    if (p.image_url) img.src = "/img/" + encodeURIComponent(row.product_id);
    text("l-path", row.label.path || row.label.category_id);
    text("l-by", `${row.label.source}${row.label.annotator ? " / " + row.label.annotator : ""}`);
    text("l-prob", pct(row.label.probability));
    text("s-path", row.suggested.path || row.suggested.category_id);
    text("s-prob", pct(row.suggested.probability));
    // a disagreement of two annotators: the other one's label, not the model's
    const people = row.flagged_by.startsWith("double labelling");
    text("s-title", people ? "The second annotator says" : "The model says");
    text("l-prob-label", people ? "one annotator of two" : "the model's probability");
    $("l-prob").hidden = people;
    $("s-prob-line").hidden = people;
  }

  async function load() {
    try {
      const data = await request("GET", "/ui/api/review");
      const id = rows[active] && rows[active].product_id;
      rows = data.rows;
      const again = rows.findIndex((r) => r.product_id === id);
      active = again >= 0 ? again : Math.min(active, Math.max(0, rows.length - 1));
      text("held-count", `${data.held} held`);
      text("confirmed-count", `${data.confirmed} reviewed`);
      counts("by-source", data.by_source);
      counts("by-annotator", data.by_annotator);
      show();
      document.body.dataset.loaded = "1";
    } catch (e) { toast(e.message, true); }
  }

  function act(path, body, said) {
    if (busy || !rows[active]) return;
    busy = true;
    (async () => {
      try {
        await request("POST", path, { product_id: rows[active].product_id, ...body });
        toast(said);
        rows.splice(active, 1);
        active = Math.min(active, Math.max(0, rows.length - 1));
        await load();
      } catch (e) { toast(e.message, true); } finally { busy = false; }
    })();
  }

  const confirm = () => act("/ui/api/review/confirm", {}, "Label confirmed");
  const correct = (categoryId) => act("/ui/api/review/correct", { category_id: categoryId }, "Label corrected");
  const take = () => { const row = rows[active]; if (row && row.suggested.category_id) correct(row.suggested.category_id); };
  const move = (step) => { if (rows.length) { active = (active + step + rows.length) % rows.length; show(); } };

  typeahead($("search"), $("results"),
    async (q) => (await request("GET", "/ui/api/categories?q=" + encodeURIComponent(q))).categories,
    (c) => el("li", { "data-category-id": c.category_id }, el("span", { text: c.path }), el("span", { class: "muted small", text: c.kind })),
    (c) => { $("search").value = ""; $("search").blur(); correct(c.category_id); });

  $("confirm").addEventListener("click", confirm);
  $("take").addEventListener("click", take);
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e)) return;
    const keys = { y: confirm, s: take, j: () => move(1), k: () => move(-1),
                   "/": () => $("search").focus(), c: () => $("search").focus() };
    const fn = keys[e.key];
    if (fn) { e.preventDefault(); fn(); }
  });

  load();
})();
