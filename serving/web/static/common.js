// Shared helpers: CSRF-carrying fetch, toasts, bar widths (CSP forbids inline styles).
"use strict";
const prodcat = (() => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const toastEl = document.getElementById("toast");
  let toastTimer = null;

  function toast(text, bad = false) {
    toastEl.textContent = text;
    toastEl.classList.toggle("bad", bad);
    toastEl.classList.add("show");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => toastEl.classList.remove("show"), bad ? 4000 : 1600);
  }

  async function request(method, url, body) {
    const options = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (method !== "GET") options.headers["X-CSRF-Token"] = csrf;
    if (body instanceof FormData) options.body = body;
    else if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    if (response.status === 401) { window.location = "/login?next=" + encodeURIComponent(location.pathname); throw new Error("signed out"); }
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      let detail = data && data.detail;
      if (Array.isArray(detail)) detail = detail.map((d) => d.msg).join("; ");
      throw new Error(detail || response.statusText);
    }
    return data;
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("data-")) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const child of children) if (child != null) node.append(child);
    return node;
  }

  // A type-ahead list: arrow keys move, Enter picks, Escape closes.
  function typeahead(input, list, search, render, pick) {
    let items = [], active = -1, seq = 0, timer = null;
    function draw() {
      list.replaceChildren(...items.map((item, i) => {
        const li = render(item);
        li.setAttribute("role", "option");
        li.setAttribute("aria-selected", i === active ? "true" : "false");
        li.addEventListener("mousedown", (e) => { e.preventDefault(); choose(i); });
        return li;
      }));
    }
    function choose(i) { if (items[i]) { const item = items[i]; close(); pick(item); } }
    function close() { items = []; active = -1; draw(); }
    input.addEventListener("input", () => {
      clearTimeout(timer);
      const q = input.value.trim();
      if (!q) { close(); return; }
      timer = setTimeout(async () => {
        const mine = ++seq;
        try {
          const found = await search(q);
          if (mine !== seq) return;
          items = found; active = found.length ? 0 : -1; draw();
        } catch (e) { toast(e.message, true); }
      }, 120);
    });
    input.addEventListener("keydown", (e) => {
      if (e.key === "ArrowDown") { active = Math.min(items.length - 1, active + 1); draw(); e.preventDefault(); }
      else if (e.key === "ArrowUp") { active = Math.max(0, active - 1); draw(); e.preventDefault(); }
      else if (e.key === "Enter") { if (active >= 0) choose(active); e.preventDefault(); }
      else if (e.key === "Escape") { close(); input.blur(); }
    });
    input.addEventListener("blur", () => setTimeout(close, 150));
    return { close };
  }

  function bars() {
    document.querySelectorAll("[data-w]").forEach((e) => e.style.setProperty("--w", e.dataset.w + "%"));
    document.querySelectorAll("[data-h]").forEach((e) => e.style.setProperty("--h", e.dataset.h + "%"));
  }
  bars();

  const typing = (e) => e.target.closest("input, textarea, select") !== null;
  return { toast, request, el, typeahead, typing };
})();
