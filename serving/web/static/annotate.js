// The annotation screen: one product at a time, keyboard first.
"use strict";
(() => {
  const { request, toast, el, typeahead, typing } = prodcat;
  const $ = (id) => document.getElementById(id);
  const strategySelect = $("strategy");
  let item = null, busy = false, labelled = 0;

  function strategy() { return strategySelect.value; }

  function showDepth(depth) {
    const s = strategy();
    let n = 0;
    for (const [name, count] of Object.entries(depth || {})) {
      if (!s || name === s || (s === "uncertainty" && name !== "random")) n += count;
    }
    $("depth").textContent = `${n} open`;
  }

  function money(product) {
    if (product.price == null) return "";
    const value = Number(product.price).toLocaleString(undefined, { maximumFractionDigits: 2 });
    return product.currency ? `${value} ${product.currency}` : value;
  }

  function render(next) {
    item = next;
    $("empty").hidden = !!item;
    $("work").hidden = !item;
    if (!item) { document.body.dataset.productId = ""; return; }
    const p = item.product || {};
    document.body.dataset.productId = item.product_id;
    $("p-title").textContent = p.title || "(product not seen on products.normalized yet)";
    $("p-brand").textContent = p.brand || "";
    $("p-price").textContent = money(p);
    $("p-feed").textContent = p.feed || "?";
    $("p-strategy").textContent = item.second_opinion ? `${item.strategy} · second opinion` : item.strategy;
    $("p-strategy").title = item.second_opinion ? "someone else labelled it; label it as you see it" : "";
    $("p-score").textContent = `score ${Number(item.score).toFixed(3)}`;
    $("p-path").textContent = (p.category_path || []).length ? "feed: " + p.category_path.join(" › ") : "";
    $("p-description").textContent = p.description || "";
    $("p-id").textContent = item.product_id;
    $("p-model").textContent = item.model_name ? `${item.model_name} v${item.model_version}` : "–";
    const img = $("p-image");
    img.hidden = true; $("p-noimage").hidden = false;
    if (p.image_url) {
      img.onload = () => { img.hidden = false; $("p-noimage").hidden = true; };
      img.onerror = () => { img.hidden = true; $("p-noimage").hidden = false; };
      img.src = "/img/" + encodeURIComponent(item.product_id);
      img.alt = p.title || "";
    } else img.removeAttribute("src");
    $("suggestions").replaceChildren(...item.suggestions.map((s, i) => {
      const button = el("button", { type: "button", disabled: !s.known, title: s.known ? s.category_id : "not a category of the served model" },
        el("kbd", { text: String(i + 1) }),
        el("span", { class: s.known ? "cat" : "cat unknown", text: s.path }),
        el("span", { class: "prob", text: `${(100 * s.probability).toFixed(1)}%` }),
        el("span", { class: "prob-bar" }));
      button.style.setProperty("--p", `${(100 * s.probability).toFixed(1)}%`);
      button.dataset.categoryId = s.category_id;
      button.addEventListener("click", () => label(s.category_id, s.path));
      return el("li", {}, button);
    }));
    // A backed-off prediction: the model is sure of the start of the path; the search starts
    // inside that subtree, so the annotator only finishes it.
    const partial = item.partial_path || [];
    $("p-partial").textContent = partial.length ? "model is sure of: " + partial.join(" › ") + " ›" : "";
    $("search").value = partial.join(" ");
    if (partial.length) $("search").dispatchEvent(new Event("input"));
  }

  async function load() {
    try {
      const data = await request("GET", "/ui/api/next?strategy=" + encodeURIComponent(strategy()));
      showDepth(data.depth);
      render(data.item);
    } catch (e) { toast(e.message, true); }
  }

  async function act(fn) {
    if (busy) return;
    busy = true;
    try { await fn(); } catch (e) { toast(e.message, true); } finally { busy = false; }
  }

  function label(categoryId, path) {
    if (!item) return;
    const productId = item.product_id;
    act(async () => {
      await request("POST", "/ui/api/label", { product_id: productId, category_id: categoryId });
      labelled += 1;
      $("session-count").textContent = `${labelled} labelled`;
      toast(`Labelled: ${path}`);
      await load();
    });
  }

  function skip() {
    if (!item) return;
    const productId = item.product_id;
    act(async () => {
      await request("POST", "/ui/api/skip", { product_id: productId });
      toast("Skipped");
      await load();
    });
  }

  function undo() {
    act(async () => {
      const data = await request("POST", "/ui/api/undo");
      labelled = Math.max(0, labelled - 1);
      $("session-count").textContent = `${labelled} labelled`;
      toast("Label undone");
      if (data.card) render(data.card); else await load();
    });
  }

  typeahead($("search"), $("results"),
    async (q) => (await request("GET", "/ui/api/categories?q=" + encodeURIComponent(q))).categories,
    (c) => el("li", { "data-category-id": c.category_id }, el("span", { text: c.path }), el("span", { class: "muted small", text: c.kind })),
    (c) => { $("search").blur(); label(c.category_id, c.path); });

  $("skip").addEventListener("click", skip);
  $("undo").addEventListener("click", undo);
  strategySelect.addEventListener("change", () => {
    const url = new URL(location.href);
    if (strategy()) url.searchParams.set("strategy", strategy()); else url.searchParams.delete("strategy");
    history.replaceState(null, "", url);
    load();
  });

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e)) return;
    if (e.key === "/") { e.preventDefault(); $("search").focus(); return; }
    if (e.key === "u") { e.preventDefault(); undo(); return; }
    if (!item) return;
    if (e.key >= "1" && e.key <= "9") {
      const s = item.suggestions[Number(e.key) - 1];
      if (s && s.known) { e.preventDefault(); label(s.category_id, s.path); }
    } else if (e.key === "s") { e.preventDefault(); skip(); }
  });

  load();
})();
