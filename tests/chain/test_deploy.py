"""The deploy command against a real anvil: deploys once, then does nothing."""

import pytest
from django.core.management import call_command
from web3 import Web3

from chain.client import bytecode_sha256, contract_at, get_web3
from chain.models import ChainTransaction, Deployment
from chain.sender import signing_address

PRODUCT = {"IdentityRegistry", "DatasetRegistry", "TrainingEscrow"}


def deploy(capsys) -> str:
    call_command("deploy_contracts")
    return capsys.readouterr().out


def renewed(out: str) -> list[str]:
    return [line.split()[0] for line in out.splitlines() if line.split()[1:3] == ["deployed", "at"]]


@pytest.mark.django_db
def test_deploy_then_rerun_does_nothing(anvil, capsys):
    w3 = get_web3()

    first = deploy(capsys)
    records = {d.contract: d for d in Deployment.objects.filter(chain_id=31337)}
    block_after_first = w3.eth.block_number
    second = deploy(capsys)

    assert set(records) == PRODUCT
    assert first.count(" deployed at ") == 3
    for record in records.values():
        assert w3.eth.get_code(Web3.to_checksum_address(record.address)) != b""
        assert ChainTransaction.objects.get(tx_hash=record.tx_hash).status == "mined"
    assert second.count("already deployed") == 3
    assert w3.eth.block_number == block_after_first
    assert ChainTransaction.objects.count() == 3
    escrow = w3.eth.contract(
        address=records["TrainingEscrow"].address,
        abi=__import__("chain.client", fromlist=["load_artifact"]).load_artifact("TrainingEscrow")[
            "abi"
        ],
    )
    operator_role = Web3.keccak(text="OPERATOR_ROLE")
    deployer = ChainTransaction.objects.first().sender
    assert deployer == signing_address("admin")  # the admin deploys; the operator only operates
    assert escrow.functions.hasRole(b"\x00" * 32, deployer).call() is True
    assert escrow.functions.hasRole(operator_role, deployer).call() is False
    assert escrow.functions.hasRole(operator_role, signing_address("operator")).call() is True


@pytest.mark.django_db
def test_a_contract_that_is_not_the_current_build_is_deployed_anew(anvil, capsys):
    deploy(capsys)
    before = {d.contract: d for d in Deployment.objects.filter(chain_id=31337)}
    # As recorded by a deployment of the escrow's previous build.
    Deployment.objects.filter(contract="TrainingEscrow").update(bytecode_sha256="0" * 64)

    out = deploy(capsys)

    after = {d.contract: d for d in Deployment.objects.filter(chain_id=31337)}
    assert renewed(out) == ["TrainingEscrow"]
    assert after["TrainingEscrow"].address != before["TrainingEscrow"].address
    assert after["TrainingEscrow"].bytecode_sha256 == bytecode_sha256("TrainingEscrow")
    assert after["TrainingEscrow"].block_number > before["TrainingEscrow"].block_number
    for name in ("IdentityRegistry", "DatasetRegistry"):
        assert after[name].address == before[name].address
    escrow = contract_at(get_web3(), "TrainingEscrow", after["TrainingEscrow"].address)
    assert escrow.functions.registry().call() == after["DatasetRegistry"].address
    assert escrow.functions.MAX_FEE_BPS().call() == 2_000
    assert renewed(deploy(capsys)) == []


@pytest.mark.django_db
def test_a_registry_deployed_anew_takes_the_escrow_built_on_it_along(anvil, capsys):
    deploy(capsys)
    before = {d.contract: d.address for d in Deployment.objects.filter(chain_id=31337)}
    Deployment.objects.filter(contract="DatasetRegistry").update(bytecode_sha256="0" * 64)

    out = deploy(capsys)

    after = {d.contract: d.address for d in Deployment.objects.filter(chain_id=31337)}
    assert renewed(out) == ["DatasetRegistry", "TrainingEscrow"]
    assert after["IdentityRegistry"] == before["IdentityRegistry"]
    assert after["DatasetRegistry"] != before["DatasetRegistry"]
    escrow = contract_at(get_web3(), "TrainingEscrow", after["TrainingEscrow"])
    assert escrow.functions.registry().call() == after["DatasetRegistry"]


@pytest.mark.django_db
def test_deploy_again_when_the_recorded_chain_was_reset(anvil, capsys):
    Deployment.objects.create(
        chain_id=31337,
        contract="DatasetRegistry",
        address="0x000000000000000000000000000000000000dEaD",
        tx_hash="0x" + "11" * 32,
        block_number=1,
        bytecode_sha256="0" * 64,
    )

    out = deploy(capsys)

    assert out.count(" deployed at ") == 3
    registry = Deployment.objects.get(chain_id=31337, contract="DatasetRegistry")
    assert registry.address != "0x000000000000000000000000000000000000dEaD"
    assert get_web3().eth.get_code(registry.address) != b""


@pytest.mark.django_db
def test_deploy_on_a_chain_that_does_not_answer_says_so(settings):
    from django.core.management.base import CommandError

    from marketplace.devstack import free_port

    settings.CHAIN_RPC_URL = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(CommandError, match="does not answer"):
        call_command("deploy_contracts")
    assert not Deployment.objects.exists()


@pytest.mark.django_db
def test_deploy_refuses_a_node_serving_another_chain(settings, anvil):
    from django.core.management.base import CommandError

    settings.CHAIN_ID = 5
    with pytest.raises(CommandError, match="serves chain 31337, but CHAIN_ID is 5"):
        call_command("deploy_contracts")
