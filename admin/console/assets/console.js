// Longshore console: actions (API calls with the session's CSRF token), forms, live updates.
// No inline script anywhere: this file is the only script of every page.
"use strict";
(function () {
  const meta = (name) => {
    const found = document.querySelector(`meta[name="${name}"]`);
    return found ? found.getAttribute("content") : "";
  };
  const csrf = meta("longshore-csrf");
  const csrfHeader = meta("longshore-csrf-header") || "x-longshore-csrf";

  const HINTS = {
    400: "Check the value named in the message and try again.",
    401: "Sign in again: your session may have expired.",
    403: "Your role does not allow this, or the console is read-only.",
    404: "It may have been deleted meanwhile.",
    409: "It changed meanwhile: reload the page and try again.",
    429: "Too many requests of this kind: wait a little.",
    503: "The store is unavailable: retry in a moment.",
  };

  function showError(status, body) {
    const panel = document.getElementById("flash");
    if (!panel) return;
    const error = (body && body.error) || {};
    panel.replaceChildren();
    panel.className = "panel error";
    const lines = [
      ["Error", `${status} ${error.message || "request failed"}`],
      ["Code", error.code || "http_error"],
      ["Request id", (body && body.requestId) || ""],
      ["Hint", HINTS[status] || "Retry, or report the request id to an administrator."],
    ];
    for (const [label, text] of lines) {
      const row = document.createElement("p");
      const strong = document.createElement("strong");
      strong.textContent = `${label}: `;
      row.append(strong, document.createTextNode(text));
      panel.append(row);
    }
    panel.hidden = false;
    panel.scrollIntoView({ block: "nearest" });
  }

  function showDone(text) {
    const panel = document.getElementById("flash");
    if (!panel) return;
    panel.className = "panel ok";
    panel.textContent = text;
    panel.hidden = false;
  }

  // A body sent as it is (a job definition in YAML), not as JSON.
  class RawBody {
    constructor(type, text) {
      this.type = type;
      this.text = text;
    }
  }

  async function call(method, url, body, approval) {
    const headers = { accept: "application/json" };
    headers[csrfHeader] = csrf;
    if (approval) headers["x-admin-approval"] = approval;
    const init = { method, headers, credentials: "same-origin" };
    if (body instanceof RawBody) {
      headers["content-type"] = body.type;
      init.body = body.text;
    } else if (body !== undefined) {
      headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    let parsed = null;
    try {
      parsed = await response.json();
    } catch (_) {
      parsed = null;
    }
    return { ok: response.ok, status: response.status, body: parsed };
  }

  // A call that, refused for want of approval, asks for the approval token and is retried.
  async function send(method, url, body) {
    let result = await call(method, url, body);
    const code = result.body && result.body.error && result.body.error.code;
    if (result.status === 403 && code === "approval_required") {
      const approval = window.prompt("This action needs approval: enter the approval token");
      if (approval) result = await call(method, url, body, approval);
    }
    return result;
  }

  const plural = (count, word) => `${count} ${word}${count === 1 ? "" : "s"}`;

  // What a dry run says would happen ("This replays 37 tasks of queue X.").
  function describePreview(body) {
    if (body && body.action) {
      const verb = body.action === "purge" ? "purges" : "replays";
      const queues = Object.entries(body.byQueue || {});
      if (!body.total) return `Nothing to ${body.action}: no dead task matches.`;
      if (queues.length === 1) return `This ${verb} ${plural(body.total, "task")} of queue ${queues[0][0]}.`;
      const parts = queues.map(([queue, count]) => `${count} of queue ${queue}`);
      return `This ${verb} ${plural(body.total, "task")}: ${parts.join(", ")}.`;
    }
    if (body && Array.isArray(body.workers)) {
      const age = `last heartbeat over ${body.olderThanSeconds} s ago`;
      if (!body.workers.length) return `No worker is stale (${age}): nothing to sweep.`;
      const ids = body.workers.map((worker) => worker.workerId).join(", ");
      return `This sweeps ${plural(body.workers.length, "stale worker")} (${ids}; ${age}), returning ${plural(body.tasks, "task")} to the queue.`;
    }
    return "This changes nothing yet: confirm to go ahead.";
  }

  // What a completed action did, when its answer says more than "done".
  function describeResult(body) {
    if (!body) return null;
    if (typeof body.replayed === "number") return `Replayed ${plural(body.replayed, "task")}.`;
    if (typeof body.purged === "number") return `Purged ${plural(body.purged, "dead task")}.`;
    if (typeof body.released === "number") return `Released ${plural(body.released, "task")}.`;
    if (typeof body.expiredKeysDeleted === "number") {
      const queues = body.queuesRemoved || [];
      return `Cleanup: ${plural(body.expiredKeysDeleted, "expired key")} deleted; ${queues.length ? "queues removed: " + queues.join(", ") : "no queue removed"}.`;
    }
    if (Array.isArray(body.workers) && body.dryRun === false) {
      return `Swept ${plural(body.workers.length, "worker")}; ${plural(body.tasks, "task")} back in the queue.`;
    }
    if (body.action && body.taskId && body.state) return `Task ${body.taskId}: ${body.previousState} → ${body.state}.`;
    return null;
  }

  function fill(template, data) {
    return template.replace(/\{(\w+)\}/g, (_, key) => encodeURIComponent(String(data[key] ?? "")));
  }

  // A test notification's task, followed until it is delivered, dead, or 30 s have passed.
  async function watchTest(sent) {
    const task = `task ${sent.taskId}`;
    showDone(`Test notification of rule ${sent.rule} queued (${task}).`);
    const deadline = Date.now() + 30000;
    let last = null;
    while (Date.now() < deadline) {
      await new Promise((resolve) => window.setTimeout(resolve, 500));
      const found = await call("GET", `/admin/v1/tasks/${encodeURIComponent(sent.taskId)}`);
      if (!found.ok || !found.body || !found.body.task) continue;
      last = found.body.task;
      if (last.state === "done") {
        showDone(`Test notification of rule ${sent.rule} delivered (${task}).`);
        return;
      }
      if (last.state === "dead") break;
    }
    const state = last ? last.state : "unknown";
    const why = (last && last.lastError) || "no error recorded yet";
    const verdict = state === "dead" ? "failed" : "not delivered yet";
    const panel = document.getElementById("flash");
    if (!panel) return;
    panel.className = "panel error";
    panel.textContent = `Test notification of rule ${sent.rule} ${verdict} (${task}, ${state}): ${why}`;
    panel.hidden = false;
  }

  // Buttons: <button data-action data-method data-url data-body data-confirm data-then>
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    event.preventDefault();
    const question = button.dataset.confirm;
    if (question && !window.confirm(question)) return;
    button.disabled = true;
    try {
      const body = button.dataset.body ? JSON.parse(button.dataset.body) : undefined;
      const method = button.dataset.method || "POST";
      // Risky actions need the approval token when the service requires approval.
      const result = await send(method, button.dataset.url, body);
      if (!result.ok) {
        showError(result.status, result.body);
        return;
      }
      const then = button.dataset.then;
      if (button.dataset.watch !== undefined && result.body && result.body.taskId) {
        watchTest(result.body);
      } else if (then) {
        window.location.assign(fill(then, (result.body && (result.body.run || result.body)) || {}));
      } else {
        showDone(describeResult(result.body) || button.dataset.done || "Done.");
        refresh();
      }
    } catch (error) {
      showError(0, { error: { message: String(error), code: "network_error" } });
    } finally {
      button.disabled = false;
    }
  });

  // Forms: <form data-api-form data-url data-then>; fields named as the API's JSON.
  function formBody(form) {
    const body = {};
    for (const field of form.querySelectorAll("[name]")) {
      if (field.disabled || field.dataset.skip !== undefined) continue;
      if (field.dataset.kind === "set") {
        // Checkboxes sharing a name: the list of the checked ones' values.
        const chosen = (body[field.name] = body[field.name] || []);
        if (field.checked) chosen.push(field.value);
        continue;
      }
      let value = field.type === "checkbox" ? field.checked : field.value;
      const kind = field.dataset.kind;
      if (kind === "lines") {
        value = value.split("\n").map((line) => line.trim()).filter((line) => line);
        if (!value.length) continue;
      } else if (kind === "int") {
        if (value.trim() === "") continue;
        value = Number.isInteger(Number(value)) ? Number(value) : value;
      } else if (kind === "float") {
        if (value.trim() === "") continue;
        value = Number(value);
      } else if (kind === "datetime") {
        // A datetime-local field (the browser's zone), sent as RFC 3339 UTC.
        if (value.trim() === "") continue;
        const moment = new Date(value);
        value = Number.isNaN(moment.getTime()) ? value : moment.toISOString();
      } else if (kind === "json") {
        if (value.trim() === "") continue;
        try {
          value = JSON.parse(value);
        } catch (error) {
          throw new FieldError(field.name, `${field.name}: not valid JSON (${error.message})`);
        }
      } else if (typeof value === "string" && value.trim() === "") {
        continue;
      }
      const path = field.name.split(".");
      let target = body;
      for (const part of path.slice(0, -1)) target = target[part] = target[part] || {};
      target[path[path.length - 1]] = value;
    }
    return body;
  }

  class FieldError extends Error {
    constructor(name, message) {
      super(message);
      this.field = name;
    }
  }

  function fieldErrors(form, message) {
    let placed = false;
    for (const part of message.split("; ")) {
      const match = /^([A-Za-z][\w.]*?)(\[\d+\])?(\.[\w.]+)?: (.*)$/s.exec(part);
      if (!match) continue;
      const name = match[1] + (match[3] || "");
      const field = form.querySelector(`[name="${CSS.escape(name)}"]`) ||
        form.querySelector(`[name="${CSS.escape(match[1])}"]`);
      if (!field) continue;
      const slot = form.querySelector(`[data-error-for="${CSS.escape(field.name)}"]`);
      if (slot) {
        slot.textContent = part;
        slot.hidden = false;
      }
      field.setAttribute("aria-invalid", "true");
      placed = true;
    }
    return placed;
  }

  // A refused YAML definition: the message under the text, naming its line (the API's for
  // a YAML error, else the line of the field it names), and that line selected.
  function yamlError(area, message) {
    const lines = area.value.split("\n");
    let line = Number((/^yaml: line (\d+)/.exec(message) || [])[1] || 0);
    if (!line) {
      const key = (/^([A-Za-z]\w*)/.exec(message) || [])[1];
      const found = key ? lines.findIndex((text) => text.startsWith(`${key}:`)) : -1;
      line = found + 1;
    }
    const slot = area.form.querySelector('[data-error-for="yaml"]');
    slot.textContent = line && !message.startsWith("yaml: line") ? `line ${line}: ${message}` : message;
    slot.dataset.line = String(line);
    slot.hidden = false;
    area.setAttribute("aria-invalid", "true");
    if (line) {
      const start = lines.slice(0, line - 1).reduce((sum, text) => sum + text.length + 1, 0);
      area.focus();
      area.setSelectionRange(start, start + (lines[line - 1] || "").length);
    }
  }

  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("form[data-api-form]");
    if (!form) return;
    event.preventDefault();
    for (const slot of form.querySelectorAll("[data-error-for]")) slot.hidden = true;
    for (const field of form.querySelectorAll("[aria-invalid]")) field.removeAttribute("aria-invalid");
    let body;
    try {
      body = form.dataset.yaml !== undefined
        ? new RawBody("application/yaml", form.elements.yaml.value)
        : formBody(form);
    } catch (error) {
      if (!(error instanceof FieldError)) throw error;
      fieldErrors(form, error.message);
      showError(400, { error: { message: error.message, code: "invalid_request" } });
      return;
    }
    const method = form.dataset.method || "POST";
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
    const submit = form.querySelector("[type=submit]");
    if (submit) submit.disabled = true;
    try {
      await submitForm(form, method, body);
    } finally {
      if (submit) submit.disabled = false;
    }
  });

  // A form with data-preview is sent twice: first as a dry run whose impact is shown, then,
  // once confirmed, for real. Editing a field asks for a new preview.
  function disarm(form) {
    if (form.dataset.armed !== "true") return;
    delete form.dataset.armed;
    const out = form.querySelector("[data-preview-out]");
    if (out) out.hidden = true;
    const submit = form.querySelector("[type=submit]");
    if (submit && submit.dataset.label) submit.textContent = submit.dataset.label;
  }

  document.addEventListener("input", (event) => {
    const form = event.target.closest && event.target.closest("form[data-preview]");
    if (form) disarm(form);
  });

  // A form's address may name its fields: data-url="/admin/v1/secrets/{name}".
  function urlOf(form) {
    const values = {};
    for (const field of form.querySelectorAll("[name]")) values[field.name] = field.value;
    return fill(form.dataset.url, values);
  }

  async function submitForm(form, method, body) {
    const url = urlOf(form);
    if (form.dataset.preview !== undefined && form.dataset.armed !== "true") {
      const dry = await send(method, url, { ...body, dryRun: true });
      if (!dry.ok) {
        showError(dry.status, dry.body);
        return;
      }
      const out = form.querySelector("[data-preview-out]");
      if (out) {
        out.textContent = describePreview(dry.body);
        out.hidden = false;
      }
      form.dataset.armed = "true";
      const submit = form.querySelector("[type=submit]");
      if (submit) {
        submit.dataset.label = submit.dataset.label || submit.textContent;
        submit.textContent = `Confirm: ${submit.dataset.label}`;
      }
      return;
    }
    const result = await send(method, url, body);
    if (!result.ok) {
      const message = (result.body && result.body.error && result.body.error.message) || "";
      if (form.dataset.yaml !== undefined) yamlError(form.elements.yaml, message);
      else fieldErrors(form, message);
      showError(result.status, result.body);
      return;
    }
    disarm(form);
    if (form.dataset.reset !== undefined) form.reset();
    if (form.dataset.done !== undefined) {
      showDone(describeResult(result.body) || form.dataset.done || "Done.");
      refresh();
      return;
    }
    const saved = (result.body && (result.body.job || result.body.schedule || result.body)) || {};
    window.location.assign(fill(form.dataset.then || window.location.pathname, saved));
  }

  // The schedule form previews the next fire times in the schedule's zone as you type.
  const scheduleForm = document.querySelector("form[data-schedule-preview]");
  if (scheduleForm) {
    const list = document.getElementById("preview");
    const problem = document.getElementById("preview-error");
    let timer = null;
    let sequence = 0;
    const update = async () => {
      const spec = scheduleForm.elements.spec.value.trim();
      const timezone = scheduleForm.elements.timezone.value.trim() || "UTC";
      const mine = ++sequence;
      if (!spec) {
        list.replaceChildren();
        problem.hidden = true;
        return;
      }
      const result = await call("POST", "/admin/v1/schedules/preview", { spec, timezone, count: 5 });
      if (mine !== sequence) return;
      list.dataset.spec = spec;
      list.dataset.timezone = timezone;
      if (!result.ok) {
        const error = (result.body && result.body.error) || {};
        problem.textContent = error.message || `preview failed (${result.status})`;
        problem.hidden = false;
        list.replaceChildren();
        list.dataset.state = "error";
        return;
      }
      problem.hidden = true;
      const times = result.body.fireTimes || [];
      list.replaceChildren(
        ...times.map((time) => {
          const item = document.createElement("li");
          const local = document.createElement("time");
          local.dateTime = time.atUtc;
          local.textContent = time.at;
          item.append(local, document.createTextNode(` (${time.atUtc})`));
          return item;
        }),
      );
      if (!times.length) list.textContent = "This spec fires no more.";
      list.dataset.state = "ok";
    };
    scheduleForm.addEventListener("input", (event) => {
      if (event.target.name !== "spec" && event.target.name !== "timezone") return;
      window.clearTimeout(timer);
      timer = window.setTimeout(update, 300);
    });
    update();
  }

  // Live pages: the #live region is re-read when the event stream says something changed.
  let pending = null;
  function refresh() {
    const region = document.getElementById("live");
    if (!region || pending) return;
    pending = window.setTimeout(async () => {
      pending = null;
      try {
        const response = await fetch(window.location.href, { credentials: "same-origin" });
        if (!response.ok) return;
        const html = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = html.getElementById("live");
        if (fresh) region.replaceWith(fresh);
      } catch (_) {
        /* the next event retries */
      }
    }, 500);
  }

  const body = document.body;
  if (body.dataset.live !== undefined && window.EventSource) {
    const stream = new EventSource("/admin/v1/events");
    for (const name of ["overview", "job_events", "schedule_events"]) {
      stream.addEventListener(name, refresh);
    }
    const badge = document.getElementById("live-state");
    stream.addEventListener("open", () => badge && (badge.textContent = "live"));
    stream.addEventListener("error", () => badge && (badge.textContent = "reconnecting"));
  }

  // A run's output, followed over SSE; EventSource resumes after a reconnect with
  // Last-Event-ID (the server's durable event ids), so nothing is shown twice.
  const output = document.getElementById("output");
  if (output && output.dataset.follow && window.EventSource) {
    const state = document.getElementById("output-state");
    const stream = new EventSource(output.dataset.follow);
    output.textContent = "";
    stream.addEventListener("output", (event) => {
      const data = JSON.parse(event.data);
      output.append(document.createTextNode(data.text));
      output.scrollTop = output.scrollHeight;
    });
    stream.addEventListener("status", (event) => {
      const data = JSON.parse(event.data);
      if (state) state.textContent = data.status;
      refresh();
    });
    stream.addEventListener("end", (event) => {
      const data = JSON.parse(event.data);
      if (state) state.textContent = `ended: ${data.status || "final"}`;
      output.dataset.ended = "true";
      stream.close();
      refresh();
    });
    stream.addEventListener("open", () => state && !output.dataset.ended && (state.textContent = "following"));
    stream.addEventListener("error", () => state && !output.dataset.ended && (state.textContent = "reconnecting"));
  }
})();
