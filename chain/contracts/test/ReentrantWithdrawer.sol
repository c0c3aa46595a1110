// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {DatasetRegistry} from "../DatasetRegistry.sol";
import {TrainingEscrow} from "../TrainingEscrow.sol";

/// @title ReentrantWithdrawer (test only)
/// @notice A dataset owner / buyer / validator contract that tries to re-enter the payment it is
/// receiving (`TrainingEscrow.withdraw`, or `withdrawStake` once it staked) when paid.
/// Modes: SWALLOW records the failed re-entry and accepts the payment; BUBBLE reverts with the
/// re-entry's error; REJECT refuses every payment (a buyer that cannot receive ETH).
contract ReentrantWithdrawer {
    uint8 public constant SWALLOW = 0;
    uint8 public constant BUBBLE = 1;
    uint8 public constant REJECT = 2;

    TrainingEscrow public immutable escrow;
    uint8 public mode;
    uint256 public reentryAttempts;
    bool public reentrySucceeded;
    bytes public lastReentryError;
    uint256 public received;
    bool public unstaking;

    error Rejected();

    constructor(TrainingEscrow escrow_) {
        escrow = escrow_;
    }

    function setMode(uint8 mode_) external {
        mode = mode_;
    }

    function attack() external {
        escrow.withdraw();
    }

    function stake() external payable {
        escrow.stake{value: msg.value}();
    }

    function requestUnstake() external {
        escrow.requestUnstake();
    }

    /// @notice Withdraws its stake, re-entering `withdrawStake` when paid.
    function attackStake() external {
        unstaking = true;
        escrow.withdrawStake();
    }

    /// @notice Lists a dataset owned by this contract, so that settlements credit it.
    function list(DatasetRegistry registry, uint256 price) external returns (uint256) {
        return registry.list("bafkreiattacker", bytes32(0), bytes32(0), "CC0-1.0", price, 0);
    }

    function fund(bytes32 jobId, uint256[] calldata datasetIds) external payable {
        escrow.fund{value: msg.value}(jobId, datasetIds);
    }

    function refund(TrainingEscrow.Job calldata job) external {
        escrow.refund(job);
    }

    receive() external payable {
        if (mode == REJECT) revert Rejected();
        received += msg.value;
        if (reentryAttempts == 0) {
            reentryAttempts += 1;
            bytes memory reentry = unstaking
                ? abi.encodeCall(TrainingEscrow.withdrawStake, ())
                : abi.encodeCall(TrainingEscrow.withdraw, ());
            (bool ok, bytes memory err) = address(escrow).call(reentry);
            reentrySucceeded = ok;
            lastReentryError = err;
            if (!ok && mode == BUBBLE) {
                assembly ("memory-safe") {
                    revert(add(err, 0x20), mload(err))
                }
            }
        }
    }
}
