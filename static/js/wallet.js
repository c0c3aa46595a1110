/*
 * Wallet glue: any EIP-1193 provider (window.ethereum), or on the local development chain a
 * "dev wallet" that forwards to anvil's unlocked test accounts. Pages use window.MarketplaceWallet:
 * connect, sign a Sign-In with Ethereum message, sign typed data, send a transaction, wait for
 * its receipt, and explain any failure in words a person understands.
 */
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("wallet-config").textContent);
  const STORAGE_KEY = "marketplace.wallet";

  class WalletError extends Error {
    constructor(code, message) {
      super(message);
      this.code = code;
    }
  }

  const toHex = (n) => "0x" + BigInt(n).toString(16);

  /* EIP-55 mixed-case checksum (wallets may report lower-case addresses; EIP-4361 needs this). */
  function toChecksumAddress(address) {
    const lower = address.toLowerCase().replace(/^0x/, "");
    const hash = window.keccak256(lower);
    let out = "0x";
    for (let i = 0; i < lower.length; i++) {
      out += parseInt(hash[i], 16) >= 8 ? lower[i].toUpperCase() : lower[i];
    }
    return out;
  }
  const utf8ToHex = (text) =>
    "0x" + Array.from(new TextEncoder().encode(text), (b) => b.toString(16).padStart(2, "0")).join("");

  /* An EIP-1193 provider over anvil's JSON-RPC: anvil signs for its unlocked dev accounts.
     Like a real wallet, it asks before signing or spending. */
  class DevWallet {
    constructor(rpcUrl, account) {
      this.rpcUrl = rpcUrl;
      this.account = account;
      this.isDevWallet = true;
    }

    async rpc(method, params) {
      let response;
      try {
        response = await fetch(this.rpcUrl, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ jsonrpc: "2.0", id: Date.now(), method, params: params || [] }),
        });
      } catch (err) {
        throw new WalletError("unreachable", `The local chain at ${this.rpcUrl} does not answer.`);
      }
      const body = await response.json();
      if (body.error) {
        const err = new WalletError(body.error.code, body.error.message);
        err.data = body.error.data;
        throw err;
      }
      return body.result;
    }

    confirmOrReject(question) {
      if (!window.confirm(question)) {
        throw new WalletError(4001, "User rejected the request.");
      }
    }

    async request({ method, params }) {
      switch (method) {
        case "eth_requestAccounts":
        case "eth_accounts":
          return [this.account];
        case "personal_sign":
          this.confirmOrReject(`Dev wallet: sign this message as ${this.account}?`);
          return this.rpc(method, params);
        case "eth_signTypedData_v4":
          this.confirmOrReject(`Dev wallet: sign this typed data as ${this.account}?`);
          return this.rpc(method, params);
        case "eth_sendTransaction": {
          const tx = params[0];
          const eth = window.MarketplaceMoney.formatEth(BigInt(tx.value || "0x0"));
          this.confirmOrReject(`Dev wallet: send ${eth} ETH to ${tx.to} from ${tx.from}?`);
          return this.rpc(method, params);
        }
        case "wallet_switchEthereumChain":
          return null;
        default:
          return this.rpc(method, params);
      }
    }
  }

  const Wallet = {
    chainId: config.chainId,
    provider: null,
    account: null,
    kind: null,
    WalletError,
    toChecksumAddress,

    hasBrowserWallet() {
      return typeof window.ethereum !== "undefined" && window.ethereum !== null;
    },

    hasDevWallet() {
      return Boolean(config.devRpcUrl);
    },

    async devAccounts() {
      if (!this.hasDevWallet()) throw new WalletError("no_dev_wallet", "The dev wallet exists only on the local development chain.");
      const accounts = await new DevWallet(config.devRpcUrl, null).rpc("eth_accounts", []);
      // Accounts 0-9 are the users'; from 10 on they are the marketplace's own (operator, admin).
      return accounts.slice(0, 10).map(toChecksumAddress);
    },

    /* Connect to the browser wallet ("browser") or the dev wallet ("dev", account). */
    async connect(kind, account) {
      if (kind === "dev") {
        if (!this.hasDevWallet()) throw new WalletError("no_dev_wallet", "The dev wallet exists only on the local development chain.");
        if (!account) throw new WalletError("no_account", "Choose a dev account first.");
        this.provider = new DevWallet(config.devRpcUrl, account);
      } else {
        if (!this.hasBrowserWallet()) {
          throw new WalletError("no_wallet", "No wallet was found in this browser. Install one (e.g. MetaMask) and reload the page.");
        }
        this.provider = window.ethereum;
      }
      const accounts = await this.provider.request({ method: "eth_requestAccounts" });
      if (!accounts || !accounts.length) throw new WalletError("no_account", "The wallet shared no account.");
      this.account = toChecksumAddress(accounts[0]);
      this.kind = kind;
      await this.ensureChain();
      sessionStorage.setItem(STORAGE_KEY, JSON.stringify({ kind, account: this.account }));
      return this.account;
    },

    /* Reconnect to the wallet chosen at sign-in (pages after the sign-in page). */
    async connectRemembered() {
      if (this.provider) return this.account;
      const saved = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "null");
      if (saved) return this.connect(saved.kind, saved.account);
      if (this.hasBrowserWallet()) return this.connect("browser");
      throw new WalletError("no_wallet", "Connect a wallet first: sign in again with your wallet.");
    },

    /* The wallet must be on our chain; offer to switch when it is not. */
    async ensureChain() {
      const current = parseInt(await this.provider.request({ method: "eth_chainId" }), 16);
      if (current === this.chainId) return;
      const ok = window.confirm(`Your wallet is on chain ${current}, but this marketplace runs on chain ${this.chainId}. Switch networks?`);
      if (!ok) throw new WalletError("wrong_chain", `Your wallet is on chain ${current}; switch it to chain ${this.chainId}.`);
      await this.provider.request({ method: "wallet_switchEthereumChain", params: [{ chainId: toHex(this.chainId) }] });
      const after = parseInt(await this.provider.request({ method: "eth_chainId" }), 16);
      if (after !== this.chainId) throw new WalletError("wrong_chain", `Your wallet is still on chain ${after}.`);
    },

    siweMessage({ address, nonce, statement }) {
      const issued = new Date();
      const expires = new Date(issued.getTime() + 10 * 60 * 1000);
      return [
        `${window.location.host} wants you to sign in with your Ethereum account:`,
        address,
        "",
        statement,
        "",
        `URI: ${window.location.origin}`,
        "Version: 1",
        `Chain ID: ${this.chainId}`,
        `Nonce: ${nonce}`,
        `Issued At: ${issued.toISOString()}`,
        `Expiration Time: ${expires.toISOString()}`,
      ].join("\n");
    },

    async signMessage(text) {
      return this.provider.request({ method: "personal_sign", params: [utf8ToHex(text), this.account] });
    },

    async signTypedData(typedData) {
      return this.provider.request({ method: "eth_signTypedData_v4", params: [this.account, JSON.stringify(typedData)] });
    },

    /* tx: {to, data, value_wei} as the marketplace API returns it. */
    async sendTransaction(tx) {
      await this.ensureChain();
      return this.provider.request({
        method: "eth_sendTransaction",
        params: [{ from: this.account, to: tx.to, data: tx.data, value: toHex(tx.value_wei || 0) }],
      });
    },

    async waitForReceipt(hash, timeoutMs = 120000) {
      const started = Date.now();
      while (Date.now() - started < timeoutMs) {
        const receipt = await this.provider.request({ method: "eth_getTransactionReceipt", params: [hash] });
        if (receipt) {
          if (receipt.status !== "0x1") throw new WalletError("reverted", `Transaction ${hash} was reverted by the contract.`);
          return receipt;
        }
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
      throw new WalletError("timeout", `Transaction ${hash} was not mined within ${timeoutMs / 1000} s.`);
    },

    /* JSON API call with the CSRF token; throws the API's message on a 4xx/5xx. */
    async api(method, url, body) {
      const csrf = (document.cookie.match(/(?:^|; )csrftoken=([^;]+)/) || [])[1];
      const response = await fetch(url, {
        method,
        credentials: "same-origin",
        headers: Object.assign({ Accept: "application/json" }, body ? { "Content-Type": "application/json" } : {}, csrf ? { "X-CSRFToken": decodeURIComponent(csrf) } : {}),
        body: body ? JSON.stringify(body) : undefined,
      });
      const data = await response.json().catch(() => ({}));
      if (!response.ok) throw new WalletError("api", data.message || `The marketplace answered ${response.status}.`);
      return data;
    },

    /* `next` if it is a path on this site, else "": never another origin or a javascript: URL. */
    localPath(next) {
      if (typeof next !== "string" || !/^\/(?![\/\\])/.test(next)) return "";
      try {
        return new URL(next, window.location.origin).origin === window.location.origin ? next : "";
      } catch (err) {
        return "";
      }
    },

    explain(err) {
      if (!err) return "Something went wrong.";
      if (err.code === 4001) return "You rejected the request in your wallet.";
      if (err.code === 4902) return `Your wallet does not know chain ${this.chainId}; add it to your wallet first.`;
      if (err.code === -32002) return "Your wallet already has a request waiting: open it and answer.";
      return err.message || String(err);
    },
  };

  window.MarketplaceWallet = Wallet;
})();
