// "Copy link": the page's own URL (with the query parameters the app and its bound widgets keep up to date),
// read when clicked, so what is copied is exactly what the address bar shows.
export default function (component) {
  const { parentElement, data } = component;
  const button = parentElement.querySelector("button.cl-button");
  const out = parentElement.querySelector(".cl-status");
  if (!button || button.dataset.wired) return;
  button.dataset.wired = "1";
  button.addEventListener("click", async () => {
    const url = window.location.href;
    out.textContent = url;
    out.title = url;
    try {
      await navigator.clipboard.writeText(url);
      button.textContent = "Link copied";
    } catch (e) {
      button.textContent = "Select the link below and copy it";  // no clipboard permission (http, some browsers)
    }
    setTimeout(() => { button.textContent = (data && data.label) || "Copy link to this view"; }, 2500);
  });
}
