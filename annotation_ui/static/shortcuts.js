// Keyboard shortcuts for the annotation and arena pages (vendored; no CDN). Clicks the same buttons and
// radios a mouse would, so the server validates exactly the same events.
(() => {
  let selected = 0;
  const visible = (el) => el && el.offsetParent !== null;
  const card = (i) => document.getElementById(`card-col-${i}`);
  const cardCount = () => { let n = 0; while (n < 8 && visible(card(n))) n++; return n; };
  const click = (id) => { const b = document.getElementById(id); if (visible(b)) b.click(); };
  const select = (i) => {
    selected = i;
    for (let j = 0; j < 8; j++) { const c = card(j); if (c) c.classList.toggle("ca-selected", j === i); }
    const c = card(i); if (c) c.scrollIntoView({ block: "nearest" });
  };
  const setRank = (rank) => {
    const input = document.querySelector(`#rank-${selected} input[type=radio][value="${rank}"]`);
    if (!input) return;
    input.click();
    if (selected + 1 < cardCount()) select(selected + 1);
  };
  document.addEventListener("keydown", (ev) => {
    const t = ev.target;
    const typing = t && (t.tagName === "TEXTAREA" || (t.tagName === "INPUT" && t.type !== "radio") || t.isContentEditable);
    if (ev.key === "Escape") { if (typing) t.blur(); return; }
    if (typing) {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); click("submit-btn"); }
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (visible(document.getElementById("arena-left-btn"))) {
      const arena = { "1": "arena-left-btn", "2": "arena-right-btn", "3": "arena-tie-btn", "4": "arena-both_bad-btn", n: "arena-next-btn" };
      if (arena[ev.key]) { ev.preventDefault(); click(arena[ev.key]); }
      return;
    }
    if (!card(selected) || !card(selected).classList.contains("ca-selected")) select(Math.min(selected, Math.max(0, cardCount() - 1)));
    const k = ev.key.toLowerCase();
    if (k.length === 1 && k >= "a" && k <= "h") {
      const i = k.charCodeAt(0) - 97; if (i < cardCount()) { ev.preventDefault(); select(i); } return;
    }
    if (/^[1-8]$/.test(ev.key)) { ev.preventDefault(); setRank(ev.key); return; }
    const focus = (id) => { const el = document.querySelector(`#${id} textarea`); if (el) { ev.preventDefault(); el.focus(); } };
    if (ev.key === "Enter") { ev.preventDefault(); click("submit-btn"); select(0); }
    else if (k === "s") { ev.preventDefault(); click("skip-btn"); select(0); }
    else if (k === "u") { ev.preventDefault(); click("undo-btn"); select(0); }
    else if (k === "m") focus("comment");
    else if (ev.key === "!") focus("flag-reason");
  });
  document.addEventListener("DOMContentLoaded", () => setTimeout(() => select(0), 500));
})();
