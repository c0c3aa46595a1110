from django.conf import settings

from marketplace.did import did_for


def marketplace(request) -> dict:
    dev_chain = settings.CHAIN_ID == settings.DEV_CHAIN_ID
    user = getattr(request, "user", None)
    did = (
        did_for(user.address, settings.CHAIN_ID) if user and getattr(user, "address", None) else ""
    )
    return {
        "csp_nonce": getattr(request, "csp_nonce", ""),  # for a page's own inline script
        "chain_id": settings.CHAIN_ID,
        "dev_chain": dev_chain,
        "current_did": did,
        "current_did_short": f"{did[:16]}…{did[-4:]}" if did else "",
        # What wallet.js needs: the chain to be on, and (dev chain only) anvil for the dev wallet.
        "wallet_config": {
            "chainId": settings.CHAIN_ID,
            "devRpcUrl": (settings.CHAIN_PUBLIC_RPC_URL or settings.CHAIN_RPC_URL)
            if dev_chain
            else None,
        },
    }
