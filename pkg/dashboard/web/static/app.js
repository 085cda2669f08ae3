// The revoke form's submit button stays disabled until the typed serial
// matches: a second, visible confirmation on top of the server's check.
document.addEventListener("DOMContentLoaded", function () {
  var confirm = document.getElementById("confirm");
  var submit = document.getElementById("revoke-submit");
  if (!confirm || !submit) {
    return;
  }
  var sync = function () {
    submit.disabled = confirm.value.trim().toLowerCase() !== confirm.dataset.expect;
  };
  confirm.addEventListener("input", sync);
  sync();
});
