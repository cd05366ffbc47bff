// Similarity evaluation: a query (product or upload), a grid of neighbours, a verdict on each.
"use strict";
(() => {
  const { request, toast, el, typeahead, typing } = prodcat;
  const $ = (id) => document.getElementById(id);
  const panel = $("query-panel");
  const maxUpload = Number(panel.dataset.maxUpload);
  let category = null, query = null, lastFile = null, result = null;

  function k() { return Number($("k").value); }

  function setCategory(c) {
    category = c;
    const chip = $("subtree-chip");
    chip.hidden = !c;
    if (c) {
      const clear = el("button", { type: "button", title: "search everywhere", text: "×" });
      clear.addEventListener("click", () => { setCategory(null); rerun(); });
      chip.replaceChildren(el("span", { text: c.path }), clear);
      chip.dataset.categoryId = c.category_id;
    }
    $("subtree-search").value = "";
  }

  async function byProduct(product) {
    query = { product };
    const params = new URLSearchParams({ product_id: product.product_id, k: k(), mode: $("mode").value });
    if (category) params.set("category", category.category_id);
    try { show(await request("GET", "/ui/api/similar?" + params)); } catch (e) { toast(e.message, true); }
  }

  async function byImage(file) {
    if (file.size > maxUpload) { toast(`The image is larger than ${maxUpload} bytes`, true); return; }
    query = { file };
    const form = new FormData();
    form.append("image", file);
    form.append("k", String(k()));
    if (category) form.append("category", category.category_id);
    try { show(await request("POST", "/ui/api/similar", form)); } catch (e) { toast(e.message, true); }
  }

  function rerun() {
    if (!query) return;
    if (query.product) byProduct(query.product); else byImage(query.file);
  }

  function show(data) {
    result = data;
    $("query-summary").hidden = false;
    const qImage = $("q-image");
    if (data.query_product_id) {
      qImage.src = "/img/" + encodeURIComponent(data.query_product_id);
      $("q-title").textContent = (data.query_product && data.query_product.title) || data.query_product_id;
    } else {
      if (lastFile) qImage.src = URL.createObjectURL(lastFile);
      $("q-title").textContent = `Uploaded image ${lastFile ? lastFile.name : ""}`;
    }
    qImage.hidden = false;
    const where = data.category_path ? `in ${data.category_path}` : "everywhere";
    const compared = { hybrid: "image + title", image: "image", text: "title" }[data.mode] || data.mode;
    $("q-meta").textContent = `${data.hits.length} neighbours ${where} by ${compared} · embedder v${data.model_version ?? "?"}`;
    $("grid").replaceChildren(...data.hits.map(card));
    document.body.dataset.hits = String(data.hits.length);
  }

  function card(hit) {
    const img = el("img", { alt: hit.title || hit.product_id, loading: "lazy" });
    img.src = "/img/" + encodeURIComponent(hit.product_id);
    img.onerror = () => img.replaceWith(el("span", { class: "noimage", text: "no image" }));
    const yes = el("button", { type: "button", class: "yes", text: "✓ Yes", title: "relevant (y)" });
    const no = el("button", { type: "button", class: "no", text: "✗ No", title: "not relevant (n)" });
    const node = el("article", { class: "hit", tabIndex: 0, "data-product-id": hit.product_id, "data-rank": String(hit.rank) },
      el("div", { class: "thumb" }, img),
      el("div", { class: "title", text: hit.title || hit.product_id, title: hit.title || "" }),
      el("div", { class: "muted small cat-path", text: hit.category_path }),
      el("div", {}, el("span", { class: "score", text: hit.score.toFixed(3) }), el("span", { class: "muted small", text: `  #${hit.rank}` })),
      el("div", { class: "judge" }, yes, no));
    yes.addEventListener("click", () => judge(node, hit, true));
    no.addEventListener("click", () => judge(node, hit, false));
    node.addEventListener("keydown", (e) => {
      if (e.key === "y") { e.preventDefault(); judge(node, hit, true); }
      else if (e.key === "n") { e.preventDefault(); judge(node, hit, false); }
      else if (e.key === "ArrowRight" && node.nextElementSibling) node.nextElementSibling.focus();
      else if (e.key === "ArrowLeft" && node.previousElementSibling) node.previousElementSibling.focus();
    });
    return node;
  }

  async function judge(node, hit, relevant) {
    const body = {
      query_product_id: result.query_product_id, query_image_sha256: result.query_image_sha256,
      neighbour_product_id: hit.product_id, rank: hit.rank, score: hit.score, relevant,
      category_id: result.category_id, model_version: result.model_version,
    };
    try {
      await request("POST", "/ui/api/judgements", body);
      node.classList.toggle("relevant", relevant);
      node.classList.toggle("irrelevant", !relevant);
      node.dataset.judged = relevant ? "relevant" : "irrelevant";
      const next = node.nextElementSibling;
      if (next && document.activeElement === node) next.focus();
    } catch (e) { toast(e.message, true); }
  }

  typeahead($("product-search"), $("product-results"),
    async (q) => (await request("GET", "/ui/api/products?q=" + encodeURIComponent(q))).products,
    (p) => el("li", { "data-product-id": p.product_id }, el("span", { text: p.title }), el("span", { class: "muted small", text: p.brand || p.feed || "" })),
    (p) => { $("product-search").value = p.title; byProduct(p); });
  typeahead($("subtree-search"), $("subtree-results"),
    async (q) => (await request("GET", "/ui/api/subtrees?q=" + encodeURIComponent(q))).categories,
    (c) => el("li", { "data-category-id": c.category_id }, el("span", { text: c.path }), el("span", { class: "muted small", text: `level ${c.depth}` })),
    (c) => { setCategory(c); rerun(); });
  $("upload").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (file) { lastFile = file; $("product-search").value = ""; byImage(file); }
  });
  $("k").addEventListener("change", rerun);
  $("mode").addEventListener("change", rerun);
  document.addEventListener("keydown", (e) => {
    if (e.key === "/" && !typing(e)) { e.preventDefault(); $("product-search").focus(); }
  });
})();
