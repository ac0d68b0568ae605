// A small self-hosted OpenAPI browser (the usual CDN-hosted UIs are unreachable offline).
"use strict";
(async () => {
  const doc = await (await fetch("/openapi.json")).json();
  document.getElementById("intro").textContent = doc.info.description;
  const ops = document.getElementById("ops");
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [verb, op] of Object.entries(item)) {
      const box = document.createElement("details");
      box.className = "card";
      const sum = document.createElement("summary");
      sum.textContent = `${verb.toUpperCase()} ${path} — ${op.operationId}`;
      box.append(sum);
      const params = (op.parameters || []).map((p) => `${p.in} ${p.name}`).join(", ");
      const pre = document.createElement("pre");
      pre.textContent = (params ? `parameters: ${params}\n` : "") +
        JSON.stringify({ requestBody: op.requestBody, responses: op.responses }, null, 2);
      box.append(pre);
      ops.append(box);
    }
  }
})();
