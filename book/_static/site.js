// The theme binds the sidebar toggles with document.querySelector(".primary-toggle"), i.e. to
// the FIRST such button: the one in the top header bar, which is not displayed. The toggles a
// reader sees (in the article header, and the only ones below 992 px) got no handler, so they
// did nothing. Forward a click on any other toggle to the first one, which has the handlers.
(function () {
  function forward(selector) {
    var buttons = document.querySelectorAll(selector);
    if (buttons.length < 2) return;
    var bound = buttons[0];
    for (var i = 1; i < buttons.length; i++) {
      buttons[i].addEventListener("click", function (event) {
        event.preventDefault();
        event.stopPropagation();
        bound.click();
      });
    }
  }
  function init() {
    forward(".primary-toggle");
    forward(".secondary-toggle");
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
