/* corral report: the documents of a document job. Each one's text with every value of its record
   marked where it was found, beside the list of those values; choosing a value finds it in the text,
   choosing a mark finds its value in the list. Inlined into the page after report.js by
   corral/report/_html.py, only in a page that has documents.

   Texts and values are untrusted (the document's, the model's): everything is built with DOM methods
   and textContent, never by parsing markup. The text arrives already cut where a value's span starts
   or ends (_html.text_pieces): a piece is a string, or [string, [field indexes, innermost first]].
   No offset is computed here, so characters beyond the BMP (two UTF-16 units each) shift nothing. */
(() => {
  "use strict";

  const source = document.querySelector('script#documents[type="application/json"]');
  const view = document.getElementById("doc-view");
  if (!source || !view) {
    return;
  }
  const documents = JSON.parse(source.textContent || "[]");
  const links = Array.from(document.querySelectorAll(".doc-link"));
  const rows = Array.from(document.querySelectorAll("table.documents tbody tr"));
  /** characters of a value shown in the list (its tooltip holds it whole) */
  const VALUE_CLIP = 200;
  const numbers = new Intl.NumberFormat("en-US");
  const HOW = { exact: "exact", normalised: "normalised", fuzzy: "fuzzy" };

  /** What is on screen: the document's index, its field buttons and its marks by field. */
  const state = { doc: -1, buttons: [], marks: [], selected: -1 };

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined && text !== null) {
      node.textContent = String(text);
    }
    return node;
  }

  function clip(text, limit) {
    const chars = Array.from(text);
    return chars.length <= limit ? text : `${chars.slice(0, limit).join("")}…`;
  }

  function plural(count, one, many) {
    return `${numbers.format(count)} ${count === 1 ? one : many}`;
  }

  // Field order as written by corral/report/_html.py (_document_object).
  function field(raw) {
    return {
      path: String(raw[0]),
      value: String(raw[1]),
      how: Object.hasOwn(HOW, raw[2]) ? raw[2] : null,
      score: typeof raw[3] === "number" ? raw[3] : null,
      page: typeof raw[4] === "number" ? raw[4] : null,
      missing: typeof raw[5] === "string" ? raw[5] : "",
    };
  }

  /** The badge saying how a value was found (and how well), or that it was not. */
  function howBadge(item) {
    if (item.how === null) {
      return element("span", "how how-none", item.missing || "not found in the text");
    }
    const score = item.score === null ? "" : ` ${item.score.toFixed(2)}`;
    const text = item.how === "exact" ? "exact" : `${item.how}${score}`;
    const badge = element("span", `how how-${item.how}`, text);
    badge.title =
      item.how === "exact"
        ? "Found as it is"
        : item.how === "normalised"
          ? "Found once case, whitespace and Unicode forms were folded"
          : `Found approximately: similarity ${item.score === null ? "unknown" : item.score.toFixed(2)}`;
    return badge;
  }

  function fieldButton(item, index) {
    const button = element("button", `doc-field${item.how === null ? " ungrounded" : ""}`);
    button.type = "button";
    button.dataset.field = String(index);
    button.dataset.path = item.path;
    button.setAttribute("aria-pressed", "false");
    const top = element("span", "field-top");
    top.append(element("code", "path", item.path), howBadge(item));
    if (item.page !== null) {
      top.append(element("span", "page", `p. ${item.page}`));
    }
    if (item.how !== null && item.missing) {
      top.append(element("span", "how how-none", item.missing));
    }
    const shown = item.value === "" ? '""' : clip(item.value, VALUE_CLIP);
    const value = element("span", item.value === "" ? "value none" : "value", shown);
    if (Array.from(item.value).length > VALUE_CLIP) {
      value.title = item.value;
    }
    button.append(top, value);
    button.addEventListener("click", () => select(index, true));
    return button;
  }

  /** The text as text nodes and marks; state.marks[i] gets field i's marks. */
  function textView(doc, fields) {
    const pre = element("pre", "doc-text");
    pre.id = "doc-text";
    pre.tabIndex = 0;
    const marks = fields.map(() => []);
    const pieces = Array.isArray(doc.text) ? doc.text : [];
    const fragment = document.createDocumentFragment();
    for (const piece of pieces) {
      if (typeof piece === "string") {
        fragment.append(document.createTextNode(piece));
        continue;
      }
      const covering = (Array.isArray(piece[1]) ? piece[1] : []).filter(
        (index) => Number.isInteger(index) && index >= 0 && index < fields.length,
      );
      if (covering.length === 0) {
        fragment.append(document.createTextNode(String(piece[0])));
        continue;
      }
      const inner = fields[covering[0]];
      const kind = `how-${inner.how || "none"}${covering.length > 1 ? " overlap" : ""}`;
      const mark = element("mark", kind, piece[0]);
      mark.dataset.f = covering.join(" ");
      mark.title = covering.map((index) => fields[index].path).join(" · ");
      covering.forEach((index) => marks[index].push(mark));
      fragment.append(mark);
    }
    if (pieces.length === 0) {
      fragment.append(element("span", "value none", "(this document has no text)"));
    }
    pre.append(fragment);
    // One listener for every mark: a mark chooses its innermost value.
    pre.addEventListener("click", (event) => {
      const mark = event.target instanceof Element ? event.target.closest("mark[data-f]") : null;
      if (mark) {
        select(Number(mark.dataset.f.split(" ")[0]), false);
      }
    });
    return { pre, marks };
  }

  function flash(mark) {
    mark.classList.remove("flash");
    void mark.offsetWidth; // restart the animation when the same value is chosen again
    mark.classList.add("flash");
  }

  /** Choose field `index`: mark it in the list and its marks in the text; `fromList` scrolls its
      span into view and flashes it, otherwise its entry in the list is scrolled into view. */
  function select(index, fromList) {
    if (state.selected >= 0) {
      state.buttons[state.selected].classList.remove("selected");
      state.buttons[state.selected].setAttribute("aria-pressed", "false");
      state.marks[state.selected].forEach((mark) => mark.classList.remove("current"));
    }
    state.selected = index;
    const button = state.buttons[index];
    if (!button) {
      state.selected = -1;
      return;
    }
    button.classList.add("selected");
    button.setAttribute("aria-pressed", "true");
    const marks = state.marks[index];
    marks.forEach((mark) => mark.classList.add("current"));
    if (fromList) {
      if (marks.length > 0) {
        marks[0].scrollIntoView({ block: "center", inline: "nearest" });
        marks.forEach(flash);
      }
    } else {
      button.scrollIntoView({ block: "nearest", inline: "nearest" });
    }
  }

  function summary(doc, fields) {
    const parts = [];
    if (typeof doc.chunks === "number") {
      parts.push(plural(doc.chunks, "chunk", "chunks"));
    }
    parts.push(plural(doc.values, "value", "values"));
    parts.push(`${numbers.format(doc.ungrounded)} not found in the text`);
    const fuzzy = fields.filter((item) => item.how === "fuzzy").length;
    if (fuzzy) {
      parts.push(`${numbers.format(fuzzy)} found approximately`);
    }
    if (typeof doc.attempts === "number" && doc.attempts) {
      parts.push(plural(doc.attempts, "request", "requests"));
    }
    if (typeof doc.tokens === "number" && doc.tokens) {
      parts.push(`${numbers.format(doc.tokens)} tokens`);
    }
    return parts.join(" · ");
  }

  function conflictsView(conflicts) {
    const box = element("div", "doc-conflicts");
    box.append(element("h4", "", `The chunks disagreed on ${plural(conflicts.length, "value", "values")}`));
    const list = element("ul");
    for (const entry of conflicts) {
      const [path, kept, others] = entry;
      const line = element("li");
      line.append(element("code", "path", path), document.createTextNode(" kept "), element("q", "", kept));
      const said = (Array.isArray(others) ? others : []).map(String);
      if (said.length > 0) {
        line.append(document.createTextNode(said.length === 1 ? "; a chunk said " : "; chunks also said "));
        said.forEach((other, index) => {
          if (index > 0) {
            line.append(document.createTextNode(", "));
          }
          line.append(element("q", "", other));
        });
      }
      list.append(line);
    }
    box.append(list);
    return box;
  }

  function legend() {
    const box = element("div", "doc-legend");
    box.setAttribute("aria-hidden", "true");
    for (const [how, label] of [
      ["exact", "found as it is"],
      ["normalised", "found once folded"],
      ["fuzzy", "found approximately"],
    ]) {
      const entry = element("span", "entry");
      entry.append(element("mark", `how-${how}`, how), document.createTextNode(` ${label}`));
      box.append(entry);
    }
    return box;
  }

  function show(index) {
    const doc = documents[index];
    if (!doc) {
      return;
    }
    state.doc = index;
    state.selected = -1;
    rows.forEach((row) => {
      const current = row.dataset.doc === String(index);
      row.classList.toggle("current", current);
      if (current) {
        row.setAttribute("aria-current", "true");
      } else {
        row.removeAttribute("aria-current");
      }
    });
    const fields = (Array.isArray(doc.fields) ? doc.fields : []).map(field);

    const head = element("div", "doc-head");
    const title = element("h3");
    title.append(element("code", "", doc.id));
    const status = element("span", `badge ${doc.ok ? "ok" : "error"}`, doc.ok ? "ok" : "error");
    head.append(title, status, element("span", "doc-summary", summary(doc, fields)));
    const parts = [head];

    if (Array.isArray(doc.error)) {
      const error = element("div", "doc-error");
      error.append(element("span", "error-kind", doc.error[0] || "error"));
      if (doc.error[1]) {
        error.append(element("span", "error-message", doc.error[1]));
      }
      parts.push(error);
    }
    if (Array.isArray(doc.conflicts) && doc.conflicts.length > 0) {
      parts.push(conflictsView(doc.conflicts));
    }
    if (doc.note) {
      parts.push(element("p", "items-note", doc.note));
    }

    const { pre, marks } = textView(doc, fields);
    state.marks = marks;
    state.buttons = fields.map(fieldButton);
    const text = element("div", "card doc-text-pane");
    text.append(pre);
    const list = element("div", "card doc-fields-pane");
    const heading = element("h4", "", `Values (${numbers.format(fields.length)})`);
    const ol = element("ol", "doc-fields");
    ol.id = "doc-fields";
    state.buttons.forEach((button) => {
      const li = element("li");
      li.append(button);
      ol.append(li);
    });
    if (fields.length === 0) {
      ol.append(element("li", "value none", "The record holds no text values."));
    }
    list.append(heading, ol);
    const panes = element("div", "doc-panes");
    panes.append(text, list);
    parts.push(legend(), panes);
    view.replaceChildren(...parts);
  }

  links.forEach((link) => {
    link.addEventListener("click", () => {
      show(Number(link.dataset.doc));
      if (view.getBoundingClientRect().top < 0 || view.getBoundingClientRect().top > window.innerHeight) {
        view.scrollIntoView({ block: "start" });
      }
    });
  });

  show(0);
})();
