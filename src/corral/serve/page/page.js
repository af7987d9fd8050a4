// The page of `corral serve`: submit a job, read its NDJSON stream, show each record as it arrives.
// Everything shown comes from texts or models, so the DOM is built with textContent only.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const form = $("job-form");
  const submitButton = $("submit");
  const cancelButton = $("cancel");
  const errorBox = $("error");
  const statusBox = $("status");
  const bar = $("bar");
  const counter = $("counter");
  const state = $("state");
  const table = $("results");
  const rows = table.querySelector("tbody");

  let jobId = null;

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit().catch((err) => finish(`The page failed: ${err.message}`));
  });
  cancelButton.addEventListener("click", () => {
    cancel().catch((err) => showError(`Could not cancel: ${err.message}`));
  });

  function headers(extra) {
    const token = $("token").value.trim();
    return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
  }

  async function submit() {
    hideError();
    let schema;
    try {
      schema = JSON.parse($("schema").value);
    } catch (err) {
      showError(`The schema is not valid JSON: ${err.message}`);
      return;
    }
    const texts = $("texts").value.split("\n").map((t) => t.trim()).filter((t) => t.length > 0);
    if (texts.length === 0) {
      showError("Write at least one text, one per line.");
      return;
    }
    const body = { schema, texts, many: $("many").checked };
    const chosenId = $("job-id").value.trim();
    if (chosenId) body.id = chosenId;

    setBusy(true);
    const response = await fetch("/v1/jobs", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json", Accept: "application/x-ndjson" }),
      body: JSON.stringify(body),
    }).catch((err) => ({ failed: err }));
    if (response.failed) {
      finish(`Could not reach the server: ${response.failed.message}`);
      return;
    }
    if (!response.ok) {
      finish(await describe(response));
      return;
    }
    jobId = response.headers.get("X-Corral-Job");
    await follow(response, texts.length);
  }

  async function follow(response, total) {
    const started = performance.now();
    let shown = 0;
    let ok = 0;
    let failure = null;
    showProgress(0, total, "running");
    try {
      for await (const line of lines(response.body)) {
        const data = JSON.parse(line);
        if (!("id" in data)) {
          failure = data.error; // the job ended before every item did: the last line says why
          continue;
        }
        shown += 1;
        if (data.error === null) ok += 1;
        addRow(shown, data);
        showProgress(shown, total, "running");
      }
    } catch (err) {
      finish(`The stream broke off (${err.message}); the results are kept on the server: ` +
        `GET /v1/jobs/${jobId}/results`);
      return;
    }
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const summary = `${ok} ok · ${shown - ok} errors · ${seconds} s · job ${jobId}`;
    showProgress(shown, total, failure ? `stopped · ${summary}` : `done · ${summary}`);
    statusBox.classList.toggle("done", !failure);
    finish(failure ? failure.message : null);
  }

  async function* lines(stream) {
    const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, end).trim();
        buffer = buffer.slice(end + 1);
        if (line) yield line;
      }
    }
    if (buffer.trim()) yield buffer.trim();
  }

  async function cancel() {
    if (!jobId) return;
    const response = await fetch(`/v1/jobs/${encodeURIComponent(jobId)}`, {
      method: "DELETE",
      headers: headers({}),
    });
    if (!response.ok && response.status !== 409) showError(await describe(response));
  }

  async function describe(response) {
    const text = await response.text();
    try {
      const data = JSON.parse(text);
      if (data && data.error && data.error.message) return `${response.status}: ${data.error.message}`;
    } catch (_) {
      // not JSON: shown as it is
    }
    return `${response.status} ${response.statusText}: ${text.slice(0, 300)}`;
  }

  // --- the table -------------------------------------------------------------------------------

  function addRow(number, record) {
    const row = document.createElement("tr");
    row.className = record.error ? "failed" : "ok";
    row.append(cell(String(number), "num"), cell(record.id, "id"), cell(record.input, "input"));
    const result = cell("", "output");
    if (record.error) {
      const kind = document.createElement("span");
      kind.className = "kind";
      kind.textContent = record.error.kind;
      result.append(kind, document.createTextNode(` ${record.error.message}`));
    } else {
      renderValue(result, record.output);
    }
    row.append(result);
    rows.append(row);
  }

  function renderValue(target, value) {
    if (Array.isArray(value)) {
      if (value.length === 0) target.append(muted("(none)"));
      for (const entry of value) {
        const line = document.createElement("div");
        renderValue(line, entry);
        target.append(line);
      }
      return;
    }
    if (value === null || typeof value !== "object") {
      target.append(document.createTextNode(JSON.stringify(value)));
      return;
    }
    for (const [key, field] of Object.entries(value)) {
      const pair = document.createElement("span");
      pair.className = "pair";
      const name = document.createElement("span");
      name.className = "key";
      name.textContent = key;
      const shown = document.createElement("span");
      shown.className = "value";
      shown.textContent = typeof field === "string" ? field : JSON.stringify(field);
      pair.append(name, shown);
      target.append(pair);
    }
  }

  function cell(text, className) {
    const td = document.createElement("td");
    td.className = className;
    td.textContent = text;
    return td;
  }

  function muted(text) {
    const span = document.createElement("span");
    span.className = "muted";
    span.textContent = text;
    return span;
  }

  // --- state -----------------------------------------------------------------------------------

  function setBusy(busy) {
    submitButton.disabled = busy;
    submitButton.textContent = busy ? "Extracting…" : "Extract";
    cancelButton.hidden = !busy;
    if (busy) {
      rows.replaceChildren();
      table.hidden = false;
      statusBox.classList.remove("done");
      jobId = null;
    }
  }

  function showProgress(shown, total, text) {
    statusBox.hidden = false;
    counter.textContent = `${shown} / ${total}`;
    state.textContent = text;
    bar.style.width = `${total ? Math.min(100, (100 * shown) / total) : 0}%`;
  }

  function finish(error) {
    setBusy(false);
    if (error) showError(error);
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  function hideError() {
    errorBox.hidden = true;
    errorBox.textContent = "";
  }
})();
