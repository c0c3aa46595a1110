/*
 * The dataset detail page: follow the listing pipeline live, let the owner sign the listing with
 * their wallet (EIP-712), and verify a listing against IPFS and the chain.
 */
(function () {
  "use strict";

  const W = window.MarketplaceWallet;
  const page = document.getElementById("dataset-page");
  if (!page) return;
  const id = page.dataset.id;
  const apiUrl = `/api/datasets/${id}`;
  const message = document.getElementById("pipeline-message");
  const say = (text, kind) => {
    if (!message) return;
    message.textContent = text;
    message.dataset.kind = kind || "info";
  };

  /* While the worker is busy, show its stage; reload when the status changes. */
  function follow() {
    const shown = page.dataset.status;
    const tick = async () => {
      try {
        const current = await W.api("GET", apiUrl);
        if (current.status !== shown) {
          window.location.reload();
          return;
        }
        const stage = document.getElementById("stage");
        const progress = document.getElementById("progress");
        if (stage) stage.textContent = current.stage_display;
        if (progress) progress.value = current.progress;
      } catch (err) {
        say(W.explain(err), "error");
      }
      window.setTimeout(tick, 1500);
    };
    window.setTimeout(tick, 1000);
  }
  if (page.dataset.status === "processing" || page.dataset.status === "registering") follow();

  const signButton = document.getElementById("sign-listing");
  if (signButton) {
    signButton.addEventListener("click", async () => {
      signButton.disabled = true;
      try {
        const current = await W.api("GET", apiUrl);
        if (!current.signing_request) {
          throw new Error(current.signing_unavailable || "There is nothing to sign now: reload the page.");
        }
        await W.connectRemembered();
        say("Confirm the signature in your wallet…");
        const signature = await W.signTypedData(current.signing_request);
        say("Signature checked; registering on-chain…");
        await W.api("POST", `${apiUrl}/signature`, { signature });
        window.location.reload();
      } catch (err) {
        say(W.explain(err), "error");
        signButton.disabled = false;
      }
    });
  }

  const verifyButton = document.getElementById("verify");
  if (verifyButton) {
    const list = document.getElementById("verify-result");
    verifyButton.addEventListener("click", async () => {
      verifyButton.disabled = true;
      list.replaceChildren();
      const pending = document.createElement("li");
      pending.textContent = "Checking IPFS and the chain…";
      list.append(pending);
      try {
        const result = await W.api("POST", `${apiUrl}/verify`);
        list.replaceChildren();
        for (const check of result.checks) {
          const item = document.createElement("li");
          item.className = check.ok ? "check-ok" : "check-failed";
          const mark = document.createElement("strong");
          mark.textContent = check.ok ? "✓ " : "✗ ";
          const label = document.createElement("span");
          label.textContent = check.label;
          const detail = document.createElement("small");
          detail.textContent = check.detail;
          item.append(mark, label, document.createElement("br"), detail);
          list.append(item);
        }
        const summary = document.createElement("li");
        summary.className = result.ok ? "check-ok summary" : "check-failed summary";
        summary.dataset.testid = "verify-summary";
        summary.textContent = result.ok
          ? "All checks passed: IPFS, the chain and this page agree."
          : "Some checks failed: this listing does not match IPFS or the chain.";
        list.prepend(summary);
      } catch (err) {
        list.replaceChildren();
        const item = document.createElement("li");
        item.className = "check-failed";
        item.textContent = W.explain(err);
        list.append(item);
      } finally {
        verifyButton.disabled = false;
      }
    });
  }
})();
