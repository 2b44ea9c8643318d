// afterimage console: keyboard shortcuts in the review queue and on case pages, upload progress for known
// media. Plain script, no build step; everything works without it (the forms are ordinary forms).
(function () {
  "use strict";
  function typing(el) {
    return el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable);
  }
  function cards() { return Array.prototype.slice.call(document.querySelectorAll("article.case")); }
  function current() {
    var active = document.activeElement;
    var card = active && active.closest ? active.closest("article.case") : null;
    return card || cards()[0] || null;
  }
  function submit(card, selector) {
    var form = card && card.querySelector(selector);
    if (form) { form.requestSubmit ? form.requestSubmit() : form.submit(); }
  }
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (typing(event.target)) {
      if (event.key === "Escape") { event.target.blur(); }
      return;
    }
    var all = cards(), card = current(), i = all.indexOf(card);
    switch (event.key) {
      case "j": if (all[i + 1]) { all[i + 1].focus(); all[i + 1].scrollIntoView({block: "start"}); } break;
      case "k": if (all[i - 1]) { all[i - 1].focus(); all[i - 1].scrollIntoView({block: "start"}); } break;
      case "c": submit(card, "form.confirm"); break;
      case "r": submit(card, "form.reopen"); break;
      case "d":
        var reason = card && card.querySelector("form.dismiss input[name=note]");
        if (reason) { event.preventDefault(); reason.focus(); }
        break;
      case "o": if (card && card.dataset.href) { window.location = card.dataset.href; } break;
      default: return;
    }
  });
  document.addEventListener("DOMContentLoaded", function () {
    var first = cards()[0];
    if (first && first.hasAttribute("tabindex")) { first.focus({preventScroll: true}); }
    var upload = document.getElementById("upload");
    if (!upload || !window.FormData) { return; }
    upload.addEventListener("submit", function (event) {
      event.preventDefault();
      var bar = upload.querySelector("progress"), text = upload.querySelector(".progress-text");
      var xhr = new XMLHttpRequest();
      xhr.open("POST", upload.action);
      xhr.upload.addEventListener("progress", function (e) {
        if (!e.lengthComputable) { return; }
        bar.hidden = false; bar.value = Math.round(100 * e.loaded / e.total);
        text.textContent = e.loaded < e.total ? " uploading " + bar.value + "%" : " hashing, please wait…";
      });
      xhr.addEventListener("load", function () { window.location = xhr.responseURL || upload.action; });
      xhr.addEventListener("error", function () { text.textContent = " upload failed: try again"; });
      xhr.send(new FormData(upload));
    });
  });
})();
