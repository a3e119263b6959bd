// Building the page without ever parsing markup: text goes in as text nodes, so a message cannot inject HTML.

/** An element with attributes (`on*` functions become listeners) and children (strings become text). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') element.addEventListener(name.slice(2), value);
    else if (name === 'class') element.className = value;
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  element.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return element;
}

/** Replaces the children of `element`. */
export const fill = (element, ...children) => element.replaceChildren(...children.flat().filter(Boolean));

/** A short, local time for a millisecond timestamp: the time today, else the date and time. */
export function when(ms) {
  const at = new Date(ms);
  const today = new Date().toDateString() === at.toDateString();
  return today
    ? at.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : at.toLocaleString([], { dateStyle: 'short', timeStyle: 'short' });
}

/** A human size: 1.5 MB. */
export function size(bytes) {
  const units = ['B', 'kB', 'MB', 'GB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/** A modal dialog with a title; `build(close)` gives its body. Escape and the close button dismiss it. */
export function dialog(title, build) {
  const box = h('dialog', { 'aria-labelledby': 'dialog-title' });
  const close = () => {
    box.close();
    box.remove();
  };
  box.append(
    h('header', {}, h('h2', { id: 'dialog-title' }, title), h('button', { type: 'button', class: 'ghost', onclick: close, 'aria-label': 'Close' }, '×')),
    build(close),
  );
  box.addEventListener('close', () => box.remove());
  document.body.append(box);
  box.showModal();
  return close;
}

/** A unique key for a request that may be retried (crypto.randomUUID needs HTTPS; this works on plain HTTP). */
export const uniqueKey = () =>
  Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
