// Shared by the viewer pages: API calls with the optional bearer token, and safe DOM building.
// The token lives in sessionStorage only (never in a URL: the API refuses tokens in query strings).
"use strict";

const TOKEN_KEY = "magdi-api-token";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));  // text, never HTML
  }
  return node;
}

async function api(path) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  const response = await fetch(path, { headers });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || body);
    const hint = response.status === 401 || response.status === 403 ? " (enter the API token above)" : "";
    throw new Error(`${response.status}: ${detail}${hint}`);
  }
  return body;
}

function setupToken(onChange) {
  const input = document.getElementById("token");
  const save = document.getElementById("save-token");
  if (!input || !save) return;
  input.value = sessionStorage.getItem(TOKEN_KEY) || "";
  save.addEventListener("click", () => {
    if (input.value) sessionStorage.setItem(TOKEN_KEY, input.value);
    else sessionStorage.removeItem(TOKEN_KEY);
    onChange();
  });
}

function fmtBool(value) {
  return value === true ? "yes" : value === false ? "no" : "–";
}

function fmtNum(value, digits) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}
