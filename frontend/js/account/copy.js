/**
 * Copy buttons: a button with data-copy="ID" copies the text of the element with that id
 * (a token or a two-factor key) to the clipboard and says so. Without JavaScript the text
 * stays selectable by hand.
 */

/**
 * @param {HTMLButtonElement} button
 * @returns {Promise<void>}
 */
export async function copyFrom(button) {
  const source = document.getElementById(button.dataset.copy ?? '');
  if (!source) return;
  const label = button.textContent;
  try {
    await navigator.clipboard.writeText((source.textContent ?? '').replace(/\s+/g, ''));
    button.textContent = 'Copied';
  } catch {
    button.textContent = 'Select and copy by hand';
  }
  setTimeout(() => { button.textContent = label; }, 2000);
}

for (const button of document.querySelectorAll('button[data-copy]')) {
  button.addEventListener('click', () => copyFrom(/** @type {HTMLButtonElement} */ (button)));
}
