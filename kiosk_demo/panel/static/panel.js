// The device simulator panel's page: polls the state, sends actions as JSON with the
// X-Kiosk-Panel header (the server refuses state changes without it). No libraries.
"use strict";

const POLL_MS = 1500;
let state = null;
let printedShown = "";

function $(id) { return document.getElementById(id); }

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function bilingual(fa, en) {
  return [el("span", { lang: "fa" }, fa), " ", el("span", { lang: "en" }, en)];
}

function say(text, ok) {
  const m = $("message");
  m.textContent = text;
  m.className = ok ? "ok" : "error";
}

function rials(n) { return n === undefined || n === null ? "—" : Number(n).toLocaleString("en-US"); }

async function api(path, body) {
  const init = body === undefined ? { cache: "no-store" } : {
    method: "POST",
    cache: "no-store",
    headers: { "Content-Type": "application/json", "X-Kiosk-Panel": "1" },
    body: JSON.stringify(body),
  };
  const resp = await fetch(path, init);
  const data = await resp.json();
  if (!resp.ok) {
    const why = (data.message_fa || "") + " — " + (data.message_en || resp.status);
    throw new Error(why);
  }
  return data;
}

async function act(path, body, done) {
  try {
    const data = await api(path, body);
    say(done(data), true);
    await refresh();
    return data;
  } catch (err) {
    say(err.message, false);
    return null;
  }
}

// --- cards ---------------------------------------------------------------------------------
function renderCards(cards) {
  $("card-in-field").textContent = cards.in_field || "—";
  const rows = cards.cards.map((c) => {
    const place = el("button", { type: "button", className: "place" },
      ...(c.in_field ? bilingual("روی کارت‌خوان", "on the reader") : bilingual("گذاشتن", "Place")));
    place.dataset.uid = c.uid;
    place.disabled = c.in_field;
    place.addEventListener("click", () => act("/api/cards/place", { uid: c.uid },
      () => "کارت گذاشته شد · card " + c.uid + " placed"));
    const row = el("tr", { className: c.in_field ? "in-field" : "" },
      el("td", { className: "code" }, c.uid),
      el("td", {}, ...(c.serial ? [el("span", { className: "code" }, c.serial)] : bilingual("خام", "blank"))),
      el("td", { className: "num" }, rials(c.balance_rials)),
      el("td", {}, c.blank ? "" : (c.profile || "")),
      el("td", {}, place));
    row.dataset.uid = c.uid;
    return row;
  });
  $("card-list").replaceChildren(...rows);
}

// --- fee slips -----------------------------------------------------------------------------
async function loadSlips() {
  try {
    const data = await api("/api/slips");
    const rows = data.slips.map((s) => {
      const scan = el("button", { type: "button", className: "scan" }, ...bilingual("اسکن", "Scan"));
      scan.dataset.barcode = s.barcode;
      scan.addEventListener("click", () => act("/api/scan", { code: s.barcode },
        () => "بارکد فرستاده شد · barcode sent: " + s.barcode));
      return el("tr", {},
        el("td", {}, s.description_fa || s.kind),
        el("td", {}, s.payer_name || ""),
        el("td", { className: "num" }, rials(s.amount_rials)),
        el("td", { className: "code" }, s.barcode),
        el("td", {}, scan));
    });
    $("slip-list").replaceChildren(...rows);
  } catch (err) {
    say(err.message, false);
  }
}

// --- printer -------------------------------------------------------------------------------
function renderPrinter(p) {
  $("printer-state").textContent =
    "paper " + p.paper + " · cover " + (p.cover_open ? "open" : "closed") +
    " · " + (p.online ? "online" : "offline") + " · jobs " + p.jobs;
  for (const b of document.querySelectorAll("button[data-paper]")) {
    b.classList.toggle("active", b.dataset.paper === p.paper);
  }
  $("cover-toggle").classList.toggle("active", p.cover_open);
  $("online-toggle").classList.toggle("active", !p.online);
}

// --- terminal ------------------------------------------------------------------------------
function renderTerminal(t) {
  const select = $("terminal-answer");
  if (select.options.length === 0) {
    for (const m of t.modes) select.append(el("option", { value: m }, m));
    select.value = t.standing;
    $("terminal-latency").value = t.latency_s;
  }
  $("terminal-state").textContent = "standing " + t.standing +
    (t.once ? " · next payment " + t.next : "") + " · latency " + t.latency_s + " s";
}

// --- printed documents ---------------------------------------------------------------------
async function loadPrinted() {
  const data = await api("/api/printed");
  const key = data.printed.map((p) => p.n).join(",");
  $("printed-count").textContent = data.printed.length + " printed";
  if (key === printedShown) return;
  printedShown = key;
  const figures = data.printed.map((p) => {
    const img = el("img", { src: p.url, alt: "printed document " + (p.n + 1), loading: "lazy" });
    return el("figure", { className: "printed" }, img,
      el("figcaption", {}, "#" + (p.n + 1) + " · " + p.width + "×" + p.height + " dots · " +
        p.bytes + " bytes" + (p.qr_codes ? " · QR " + p.qr_codes : "") +
        (p.unhandled ? " · " + p.unhandled + " commands not drawn" : "")));
  });
  $("printed-list").replaceChildren(...figures);
}

async function refresh() {
  try {
    state = await api("/api/state");
    renderCards(state.cards);
    renderPrinter(state.printer);
    renderTerminal(state.terminal);
    await loadPrinted();
    document.body.dataset.ready = "1";
  } catch (err) {
    say(err.message, false);
  }
}

function wire() {
  $("remove-card").addEventListener("click", () => act("/api/cards/remove", {},
    () => "کارت برداشته شد · card taken off"));
  $("tear-card").addEventListener("click", () => act("/api/cards/tear", { at_op: 1, after_bytes: 0 },
    (d) => "کارت هنگام نوشتن بعدی کشیده می‌شود · card " + d.tear.uid + " leaves at the next block write"));
  $("new-card-4").addEventListener("click", () => act("/api/cards/new", { uid_bytes: 4 },
    (d) => "کارت خام تازه · new blank card " + d.uid));
  $("new-card-7").addEventListener("click", () => act("/api/cards/new", { uid_bytes: 7 },
    (d) => "کارت خام تازه · new blank card " + d.uid));
  $("slips-refresh").addEventListener("click", loadSlips);
  $("scan-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const code = $("scan-text").value.trim();
    act("/api/scan", { code }, () => "فرستاده شد · sent: " + code);
  });
  for (const b of document.querySelectorAll("button[data-paper]")) {
    b.addEventListener("click", () => act("/api/printer", { paper: b.dataset.paper },
      () => "کاغذ · paper " + b.dataset.paper));
  }
  $("cover-toggle").addEventListener("click", () => act("/api/printer",
    { cover_open: !(state && state.printer.cover_open) }, (p) => "cover " + (p.cover_open ? "open" : "closed")));
  $("online-toggle").addEventListener("click", () => act("/api/printer",
    { online: !(state && state.printer.online) }, (p) => (p.online ? "online" : "offline")));
  $("terminal-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const body = {
      answer: $("terminal-answer").value,
      once: $("terminal-once").checked,
      latency_s: Number($("terminal-latency").value || 0),
    };
    act("/api/terminal", body, (t) => "terminal: " + (t.once ? "next payment " + t.next : t.standing) +
      ", " + t.latency_s + " s");
  });
}

document.addEventListener("DOMContentLoaded", () => {
  wire();
  refresh();
  loadSlips();
  setInterval(refresh, POLL_MS);
});
