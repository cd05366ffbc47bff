// The Taxonomy page: find a node, then rename (n), move (m), merge (g) or split (s) it.
"use strict";
(() => {
  const { request, toast, el, typeahead, typing } = prodcat;
  const $ = (id) => document.getElementById(id);
  const canEdit = !!$("change-form");
  let node = null, op = null, timer = null;

  const searchNodes = async (q) => (await request("GET", "/ui/api/taxonomy/nodes?q=" + encodeURIComponent(q))).nodes;
  const nodeItem = (n) => el("li", { "data-node-id": n.id }, el("span", { text: n.path }), el("span", { class: "muted small", text: n.id }));

  function select(n) {
    node = n;
    $("selected").hidden = false;
    $("node-path").textContent = n.path.split(" > ").join(" › ");
    $("node-id").textContent = n.id;
    $("node-facts").textContent = `depth ${n.depth} · ${n.children} children` + (n.count ? ` · ${n.count.toLocaleString()} products` : "");
    document.body.dataset.nodeId = n.id;
    closeForm();
  }

  const forms = {
    n: { op: "rename", label: "New name", help: "Enter renames; the subtree's paths follow." },
    m: { op: "move", label: "New parent", help: "Type to find the new parent, Enter moves it there (or type / for a root)." },
    g: { op: "merge", label: "Merge into", help: "Type to find the node that absorbs it; its labels, rules and model column follow." },
    s: { op: "split", label: "New children", help: "Names separated by commas; labels at the node stay, as partial labels." },
  };

  function openForm(key) {
    if (!canEdit || !node) return;
    op = forms[key];
    $("change-form").hidden = false;
    $("change-label").textContent = op.label;
    $("change-help").textContent = op.help;
    $("change-input").value = op.op === "rename" ? node.path.split(" > ").pop() : "";
    $("change-input").focus();
    $("change-input").select();
  }

  function closeForm() { op = null; if (canEdit) $("change-form").hidden = true; }

  async function submit(extra) {
    const body = { op: op.op, node: node.id, ...extra };
    try {
      const data = await request("POST", "/ui/api/taxonomy/changes", body);
      toast(`Applying: ${data.change.describe}`);
      closeForm();
      $("change-input").blur();
      await load();
    } catch (e) { toast(e.message, true); }
  }

  const count = (labels) => Object.values(labels || {}).reduce((a, b) => a + b, 0);

  function draw(changes) {
    $("changes").replaceChildren(...changes.map((c) => {
      const when = c.at ? new Date(c.at).toLocaleString() : "";
      const shown = (path, id) => (path ? path.join(" › ") : id);
      const target = c.op === "rename" ? c.name : c.op === "move" ? (c.parent ? shown(c.parent_path, c.parent) : "(root)")
        : c.op === "merge" ? shown(c.into_path, c.into) : (c.parts || []).join(", ");
      const text = `${c.op} ${shown(c.node_path, c.node)} → ${target}`;
      return el("tr", { "data-change-id": c.change_id, "data-state": c.state },
        el("td", { class: "small", text: when }),
        el("td", { text }),
        el("td", { text: c.by || "" }),
        el("td", { class: "num", text: c.state === "done" ? String(count(c.labels)) : "" }),
        el("td", { class: "num", text: c.state === "done" ? String(c.rules ?? 0) : "" }),
        el("td", { class: "num", text: c.model_version ? `v${c.model_version}` : "" }),
        el("td", { class: "num", text: c.rescored != null ? String(c.rescored) : "" }),
        el("td", { class: `state ${c.state}`, text: c.state === "failed" ? `failed: ${c.error}` : c.state }));
    }));
  }

  async function load() {
    clearTimeout(timer);
    try {
      const data = await request("GET", "/ui/api/taxonomy/changes");
      draw(data.changes);
      if (data.changes.some((c) => c.state === "running")) timer = setTimeout(load, 1000);
      document.body.dataset.loaded = "1";
    } catch (e) { toast(e.message, true); }
  }

  typeahead($("node-search"), $("node-results"), searchNodes, nodeItem, (n) => { $("node-search").blur(); select(n); });

  if (canEdit) {
    typeahead($("change-input"), $("change-results"),
      async (q) => (op && (op.op === "move" || op.op === "merge") && q !== "/" ? searchNodes(q) : []),
      nodeItem,
      (n) => submit(op.op === "move" ? { parent: n.id } : { into: n.id }));
    $("change-input").addEventListener("keydown", (e) => {
      if (!op) return;
      if (e.key === "Escape") { closeForm(); return; }
      if (e.key !== "Enter") return;
      const value = $("change-input").value.trim();
      if (op.op === "rename" && value) { e.preventDefault(); submit({ name: value }); }
      else if (op.op === "split") { e.preventDefault(); submit({ parts: value.split(",").map((p) => p.trim()).filter(Boolean) }); }
      else if (op.op === "move" && value === "/") { e.preventDefault(); submit({ parent: null }); }
    });
    $("change-form").addEventListener("submit", (e) => e.preventDefault());
  }

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e)) return;
    if (e.key === "/") { e.preventDefault(); $("node-search").focus(); return; }
    if (forms[e.key]) { e.preventDefault(); openForm(e.key); }
  });

  load();
})();
