/* The demo shop's script: starts the payment SDK with the TN the shop's server got from
 * appTransReq.do, posts the bank-card form to the gateway, and on an order's page hands the
 * SDK's synchronous result to the shop's server, which verifies its signature. */
(function () {
  "use strict";

  function startQuickPass(panel) {
    window.CloudPass.startPay({
      tn: panel.getAttribute("data-tn"),
      mode: "01",
      returnUrl: panel.getAttribute("data-return")
    });
  }

  function reportResult(order) {
    window.CloudPass.handlePaymentResult(function (code, resultData) {
      var shown = document.getElementById("app-result");
      if (shown) {
        shown.textContent = shown.textContent.replace(/—$/, code);
      }
      if (!resultData) {
        window.location.reload();
        return;
      }
      var body = new URLSearchParams();
      body.set("result_data", JSON.stringify(resultData));
      fetch("/demo-merchant/orders/" + order + "/app-result", {
        method: "POST",
        body: body,
        credentials: "same-origin"
      }).then(function () {
        window.location.reload();
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var panel = document.getElementById("start-pay");
    if (panel) {
      document.getElementById("start").addEventListener("click", function () {
        startQuickPass(panel);
      });
      startQuickPass(panel);
    }
    var front = document.getElementById("front-form");
    if (front) {
      front.submit();
    }
    var order = document.getElementById("order");
    if (order) {
      reportResult(order.getAttribute("data-order"));
    }
  });
})();
