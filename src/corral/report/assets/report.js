/* corral report: the items table (search, status filter, pages) and the error breakdown's item links.
   Inlined into the page by corral/report/html.py. Item texts and records are untrusted: every cell is
   built with DOM methods and textContent, never by parsing markup. */
(() => {
  "use strict";

  const PAGE_SIZE = 50;
  /** characters of an input shown before its "more" toggle */
  const CLIP = 360;
  /** characters of a record's field shown in the table (the whole field is its tooltip, and the
      whole record is a click away as JSON) */
  const FIELD_CLIP = 120;
  const numbers = new Intl.NumberFormat("en-US");

  const source = document.querySelector('script#items[type="application/json"]');
  const rows = document.getElementById("item-rows");
  if (!source || !rows) {
    return;
  }
  const section = document.getElementById("sec-items");
  const search = document.getElementById("item-search");
  const empty = document.getElementById("items-empty");
  const range = document.getElementById("items-range");
  const prev = document.getElementById("page-prev");
  const next = document.getElementById("page-next");
  const only = document.getElementById("item-only");
  const onlyId = document.getElementById("item-only-id");
  const onlyClear = document.getElementById("item-only-clear");
  const statusInputs = Array.from(document.querySelectorAll('input[name="item-status"]'));
  const counts = {};
  document.querySelectorAll("[data-count]").forEach((element) => {
    counts[element.dataset.count] = element;
  });

  // Field order as written by corral/report/html.py (_item_array).
  const items = JSON.parse(source.textContent || "[]").map((fields) => ({
    id: String(fields[0]),
    ok: fields[1] === true,
    input: fields[2] === null ? "" : String(fields[2]),
    record: fields[3],
    errorKind: fields[4],
    errorMessage: fields[5],
    attempts: fields[6],
    latency: fields[7],
    tokens: fields[8],
    cost: fields[9],
    run: fields[10],
  }));
  // What a search looks through, lowercased once: id, input, record JSON, error kind and message.
  const haystacks = items.map((item) =>
    [item.id, item.input, item.record || "", item.errorKind || "", item.errorMessage || ""]
      .join("\n")
      .toLowerCase(),
  );

  const state = { query: "", status: "all", only: null, page: 1 };

  // --- formatting (the money rule is corral's everywhere: see corral/progress.py) -------------

  function duration(seconds) {
    if (typeof seconds !== "number") {
      return "–";
    }
    // 0.9996 s is "1.00 s", not "1000 ms"
    if (Math.round(seconds * 1000) < 1000) {
      return `${Math.round(seconds * 1000)} ms`;
    }
    if (seconds < 10) {
      return `${seconds.toFixed(2)} s`;
    }
    if (seconds < 60) {
      return `${seconds.toFixed(1)} s`;
    }
    const total = Math.round(seconds);
    return `${Math.floor(total / 60)}m ${String(total % 60).padStart(2, "0")}s`;
  }

  function money(amount) {
    if (typeof amount !== "number") {
      return "unknown";
    }
    if (amount === 0) {
      return "$0";
    }
    if (amount < 0.0001) {
      return "<$0.0001";
    }
    if (amount < 1) {
      return `$${amount.toFixed(4)}`;
    }
    return `$${numbers.format(Number(amount.toFixed(2)))}`;
  }

  function count(value) {
    return typeof value === "number" ? numbers.format(value) : "–";
  }

  // --- building rows ---------------------------------------------------------------------------

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined) {
      node.textContent = text;
    }
    return node;
  }

  function cell(label, className) {
    const td = element("td", className);
    td.dataset.label = label;
    return td;
  }

  /** The first `limit` characters (whole code points, ending at a word if one ends nearby) and "…". */
  function clip(text, limit = CLIP) {
    const head = Array.from(text).slice(0, limit).join("");
    const space = head.search(/\s\S*$/);
    return `${space > limit - limit / 9 ? head.slice(0, space) : head}…`;
  }

  function inputText(text) {
    const wrap = element("div", "input-text");
    if (Array.from(text).length <= CLIP) {
      wrap.textContent = text;
      return wrap;
    }
    const short = clip(text);
    const body = document.createTextNode(short);
    const toggle = element("button", "more", "more");
    toggle.type = "button";
    toggle.setAttribute("aria-expanded", "false");
    toggle.addEventListener("click", () => {
      const open = toggle.getAttribute("aria-expanded") !== "true";
      body.data = open ? text : short;
      toggle.textContent = open ? "less" : "more";
      toggle.setAttribute("aria-expanded", String(open));
    });
    wrap.append(body, toggle);
    return wrap;
  }

  /** One field's value as the serve page shows it: a string as it is, anything else as compact
      JSON; cut when long (its tooltip holds it whole). */
  function fieldValue(value) {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    const shown = text === undefined ? String(value) : text;
    const node = element("span", value === null || value === "" ? "value none" : "value");
    if (value === "") {
      node.textContent = '""';
    } else if (Array.from(shown).length > FIELD_CLIP) {
      node.textContent = clip(shown, FIELD_CLIP);
      node.title = shown;
    } else {
      node.textContent = shown;
    }
    return node;
  }

  /** A record on as few lines as it needs: "name: Ana · age: 34", wrapping only when the fields do
      not fit; the record as indented JSON behind a toggle. A record that is not an object (a list, a
      number) is shown as compact JSON. */
  function recordView(text) {
    const wrap = element("div", "record");
    const fields = element("div", "fields");
    let value;
    try {
      value = JSON.parse(text);
    } catch {
      // Not JSON (a float Python wrote as NaN): the text as it is, and no toggle to show it again.
      wrap.append(element("pre", "json", text));
      return wrap;
    }
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      const entries = Object.entries(value);
      if (entries.length === 0) {
        fields.append(element("span", "value none", "(no fields)"));
      }
      entries.forEach(([key, field], index) => {
        // No-break spaces keep "age: 20" on one line, and a line from starting with "·".
        if (index > 0) {
          fields.append(element("span", "sep", "\u00a0· "));
        }
        const pair = element("span", "field");
        pair.append(element("span", "key", `${key}:`), document.createTextNode("\u00a0"), fieldValue(field));
        fields.append(pair);
      });
    } else {
      fields.append(fieldValue(value));
    }
    const json = element("pre", "json", text);
    json.hidden = true;
    const toggle = element("button", "more json-toggle", "JSON");
    toggle.type = "button";
    toggle.title = "Show the whole record as JSON";
    toggle.setAttribute("aria-expanded", "false");
    toggle.addEventListener("click", () => {
      json.hidden = !json.hidden;
      toggle.setAttribute("aria-expanded", String(!json.hidden));
      toggle.title = json.hidden ? "Show the whole record as JSON" : "Hide the JSON";
    });
    fields.append(toggle);
    wrap.append(fields, json);
    return wrap;
  }

  function buildRow(item) {
    const tr = element("tr", item.ok ? "ok" : "error");
    tr.dataset.id = item.id;

    const id = cell("Item", "id");
    id.append(element("code", "", item.id));
    if (typeof item.run === "number") {
      id.title = `Finished by run ${item.run}`;
    }

    const status = cell("Status", "status");
    status.append(element("span", `badge ${item.ok ? "ok" : "error"}`, item.ok ? "ok" : "error"));

    const input = cell("Input", "input");
    input.append(inputText(item.input));

    const result = cell(item.ok ? "Record" : "Error", "result");
    if (item.ok) {
      result.append(recordView(item.record === null ? "null" : item.record));
    } else {
      result.append(element("span", "error-kind", item.errorKind || "error"));
      if (item.errorMessage) {
        result.append(element("span", "error-message", item.errorMessage));
      }
    }

    const tokens = cell("Tokens", "num");
    tokens.textContent = count(item.tokens);
    tokens.title = `Cost ${money(item.cost)}`;

    tr.append(
      id,
      status,
      input,
      result,
      Object.assign(cell("Attempts", "num"), { textContent: count(item.attempts) }),
      Object.assign(cell("Latency", "num"), { textContent: duration(item.latency) }),
      tokens,
    );
    return tr;
  }

  // --- filtering and pages ---------------------------------------------------------------------

  function matchesText(index) {
    if (state.only !== null) {
      return items[index].id === state.only;
    }
    return state.query === "" || haystacks[index].includes(state.query);
  }

  function emptyMessage() {
    if (items.length === 0) {
      return "This report holds no items.";
    }
    if (state.only !== null) {
      return `Item “${state.only}” is not in this page's table.`;
    }
    const among = { all: "", ok: " among the ok items", errors: " among the errors" }[state.status];
    if (state.query !== "") {
      return `No item matches “${search.value.trim()}”${among}.`;
    }
    return state.status === "errors" ? "No item failed." : "No item succeeded.";
  }

  function update() {
    let ok = 0;
    let failed = 0;
    const shown = [];
    for (let index = 0; index < items.length; index += 1) {
      if (!matchesText(index)) {
        continue;
      }
      const item = items[index];
      if (item.ok) {
        ok += 1;
      } else {
        failed += 1;
      }
      if (state.status === "all" || (state.status === "ok") === item.ok) {
        shown.push(index);
      }
    }
    counts.all.textContent = numbers.format(ok + failed);
    counts.ok.textContent = numbers.format(ok);
    counts.errors.textContent = numbers.format(failed);

    const pages = Math.max(1, Math.ceil(shown.length / PAGE_SIZE));
    state.page = Math.min(Math.max(1, state.page), pages);
    const start = (state.page - 1) * PAGE_SIZE;
    const page = shown.slice(start, start + PAGE_SIZE);
    rows.replaceChildren(...page.map((index) => buildRow(items[index])));

    empty.hidden = shown.length > 0;
    empty.textContent = shown.length > 0 ? "" : emptyMessage();
    const filtered = shown.length !== items.length;
    range.textContent =
      shown.length === 0
        ? ""
        : `Showing ${numbers.format(start + 1)}–${numbers.format(start + page.length)} of ` +
          `${numbers.format(shown.length)}${filtered ? ` · filtered from ${numbers.format(items.length)}` : ""}`;
    prev.disabled = state.page <= 1;
    next.disabled = state.page >= pages;
    only.hidden = state.only === null;
    onlyId.textContent = state.only === null ? "" : state.only;
  }

  function showTableTop() {
    if (section.getBoundingClientRect().top < 0) {
      section.scrollIntoView({ block: "start" });
    }
  }

  search.addEventListener("input", () => {
    state.query = search.value.trim().toLowerCase();
    state.only = null;
    state.page = 1;
    update();
  });
  statusInputs.forEach((input) => {
    input.addEventListener("change", () => {
      state.status = input.value;
      state.page = 1;
      update();
    });
  });
  prev.addEventListener("click", () => {
    state.page -= 1;
    update();
    showTableTop();
  });
  next.addEventListener("click", () => {
    state.page += 1;
    update();
    showTableTop();
  });
  onlyClear.addEventListener("click", () => {
    state.only = null;
    state.page = 1;
    update();
  });
  // An item id in the error breakdown: the table shows that item alone.
  document.querySelectorAll(".item-link").forEach((link) => {
    link.addEventListener("click", () => {
      state.only = link.dataset.item;
      state.query = "";
      state.status = "all";
      state.page = 1;
      search.value = "";
      statusInputs.forEach((input) => {
        input.checked = input.value === "all";
      });
      update();
      section.scrollIntoView({ block: "start" });
    });
  });
  // "/" jumps to the search box, as on most sites with one.
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    const typing = target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement;
    if (event.key === "/" && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
      event.preventDefault();
      search.focus();
    }
  });

  update();
})();
