// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {DatasetRegistry} from "./DatasetRegistry.sol";

/// @title TrainingEscrow
/// @notice Holds a buyer's payment for a training job over datasets of the `DatasetRegistry`, then
/// either pays the datasets' owners (one amount per dataset, as valued by the operator) plus the
/// marketplace fee, or refunds whoever funded the job. Payouts are credited and pulled with
/// `withdraw`.
/// @dev Gas design: a job is one storage slot holding a commitment to its terms while funded and a
/// marker once settled or refunded; the terms live in the `JobFunded` event and are passed back
/// as calldata. Lineage of a model = JobFunded (datasets, owners) + JobSettled (model) +
/// PayeeCredited (one per dataset, in the datasets' order).
/// Roles: the admin (DEFAULT_ADMIN_ROLE) sets fees and manages roles, the operator settles and
/// refunds; no account may hold both.
contract TrainingEscrow is AccessControl, ReentrancyGuardTransient {
    /// @notice Terms of a funded job, as emitted in `JobFunded`.
    struct Job {
        bytes32 id;
        address buyer;
        uint256 value;
        uint256 fee;
        uint64 refundAfter;
        uint256[] datasetIds;
        address[] owners; // each dataset's owner when the job was funded
    }

    /// @dev One slot (256 bits): the fee terms of new jobs and the fees of settled jobs, so that a
    /// settlement writes a slot that is already non-zero.
    struct Config {
        uint96 computeFee;
        uint16 feeBps;
        uint32 refundDelay;
        uint112 feesHeld;
    }

    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");
    uint256 public constant BPS_DENOMINATOR = 10_000;
    /// @notice Upper bound of the marketplace's share of the datasets' prices (20 %).
    uint256 public constant MAX_FEE_BPS = 2_000;
    /// @notice Upper bound of the buyer's refund delay, so funds are never locked for long.
    uint256 public constant MAX_REFUND_DELAY = 30 days;

    uint8 public constant JOB_NONE = 0;
    uint8 public constant JOB_FUNDED = 1;
    uint8 public constant JOB_SETTLED = 2;
    uint8 public constant JOB_REFUNDED = 3;

    /// @dev Markers that replace a job's commitment; no keccak256 output collides with them.
    bytes32 private constant _SETTLED = bytes32(uint256(JOB_SETTLED));
    bytes32 private constant _REFUNDED = bytes32(uint256(JOB_REFUNDED));

    DatasetRegistry public immutable registry;

    Config private _config;
    /// @dev Keyed by the funder, then the job id: a stranger funding a buyer's job id writes a slot
    /// of its own, so it can neither block the buyer's payment nor pass for it.
    mapping(address buyer => mapping(bytes32 jobId => bytes32 commitmentOrMarker)) private _jobs;
    mapping(address account => uint256 amount) private _balances;

    event JobFunded(
        bytes32 indexed jobId,
        address indexed buyer,
        uint256[] datasetIds,
        address[] owners,
        uint256 value,
        uint256 fee,
        uint64 refundAfter
    );
    event PayeeCredited(address indexed payee, bytes32 indexed jobId, uint256 amount);
    event JobSettled(
        bytes32 indexed jobId, address indexed buyer, string modelCid, bytes32 reportHash, uint256 fee
    );
    event JobRefunded(bytes32 indexed jobId, address indexed buyer, uint256 value);
    event Withdrawn(address indexed account, uint256 amount);
    event FeesWithdrawn(address indexed to, uint256 amount);
    event FeesChanged(uint256 computeFee, uint256 feeBps);
    event RefundDelayChanged(uint256 refundDelay);

    error ZeroAddress();
    error AdminAndOperatorMustDiffer(address account);
    error ComputeFeeTooHigh(uint256 computeFee);
    error FeeBpsTooHigh(uint256 feeBps);
    error RefundDelayTooLong(uint256 refundDelay);
    error NoDatasets();
    error DuplicateDataset(uint256 datasetId);
    error WrongPayment(uint256 expected, uint256 sent);
    error JobExists(bytes32 jobId);
    error UnknownJob(bytes32 jobId);
    error JobNotFunded(bytes32 jobId);
    error JobTermsMismatch(bytes32 jobId);
    error LengthMismatch();
    error AmountsMismatch(uint256 expected, uint256 got);
    error NotBuyerOrOperator();
    error RefundNotYetAllowed(uint256 refundAfter);
    error NothingToWithdraw();
    error WithdrawFailed();
    /// @dev Raised by the registry during `quote` / `fund`; declared here so clients decode them.
    error UnknownListing(uint256 listingId);
    error ListingDelisted(uint256 listingId);

    constructor(
        DatasetRegistry registry_,
        address admin,
        address operator,
        uint256 computeFee,
        uint16 feeBps,
        uint64 refundDelay
    ) {
        if (address(registry_) == address(0) || admin == address(0) || operator == address(0)) {
            revert ZeroAddress();
        }
        registry = registry_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(OPERATOR_ROLE, operator);
        _setFees(computeFee, feeBps);
        _setRefundDelay(refundDelay);
    }

    // ---------------------------------------------------------------- buyer

    /// @notice Price to pay for a job over `datasetIds` (current dataset prices + compute fee), and
    /// the part of it the marketplace keeps.
    function quote(uint256[] calldata datasetIds) external view returns (uint256 price, uint256 fee) {
        (price, fee,) = _quote(datasetIds, _config);
    }

    /// @notice Funds the caller's job `jobId` with exactly the quoted price; the fee and each
    /// dataset's owner are frozen now.
    function fund(bytes32 jobId, uint256[] calldata datasetIds) external payable {
        if (_jobs[msg.sender][jobId] != 0) revert JobExists(jobId);
        Config memory config = _config;
        (uint256 price, uint256 fee, address[] memory owners) = _quote(datasetIds, config);
        if (msg.value != price) revert WrongPayment(price, msg.value);
        uint64 refundAfter = uint64(block.timestamp) + config.refundDelay;
        _jobs[msg.sender][jobId] = keccak256(abi.encode(msg.value, fee, refundAfter, datasetIds, owners));
        emit JobFunded(jobId, msg.sender, datasetIds, owners, msg.value, fee, refundAfter);
    }

    /// @notice Refunds a funded job to whoever funded it: an operator may at any time before
    /// settlement, the funder once `refundAfter` has passed. The value is credited, then withdrawn.
    function refund(Job calldata job) external {
        _checkFunded(job);
        if (!hasRole(OPERATOR_ROLE, msg.sender)) {
            if (msg.sender != job.buyer) revert NotBuyerOrOperator();
            if (block.timestamp < job.refundAfter) revert RefundNotYetAllowed(job.refundAfter);
        }
        _jobs[job.buyer][job.id] = _REFUNDED;
        _balances[job.buyer] += job.value;
        emit JobRefunded(job.id, job.buyer, job.value);
    }

    // ---------------------------------------------------------------- operator

    /// @notice Settles a funded job: credits each dataset's owner (as committed at funding) its
    /// amount, keeps the job's fee, records the model.
    /// @dev `amounts[i]` goes to `job.owners[i]`; they must add up to exactly `job.value - job.fee`.
    function settle(Job calldata job, uint256[] calldata amounts, string calldata modelCid, bytes32 reportHash)
        external
        onlyRole(OPERATOR_ROLE)
    {
        _checkFunded(job);
        uint256 count = amounts.length;
        if (count != job.owners.length) revert LengthMismatch();
        _jobs[job.buyer][job.id] = _SETTLED;
        uint256 total;
        for (uint256 i; i < count; ++i) {
            address payee = job.owners[i];
            uint256 amount = amounts[i];
            total += amount;
            // A wrap would need amount > 2**256 - balance, so total > expected: reverted below.
            unchecked {
                _balances[payee] += amount;
            }
            emit PayeeCredited(payee, job.id, amount);
        }
        // Checked last, in the same pass as the credits: a mismatch reverts them all.
        uint256 expected = job.value - job.fee;
        if (total != expected) revert AmountsMismatch(expected, total);
        _config.feesHeld += SafeCast.toUint112(job.fee);
        emit JobSettled(job.id, job.buyer, modelCid, reportHash, job.fee);
    }

    // ---------------------------------------------------------------- withdrawals

    /// @notice Sends the caller's whole credited balance.
    function withdraw() external nonReentrant {
        uint256 amount = _balances[msg.sender];
        if (amount == 0) revert NothingToWithdraw();
        _balances[msg.sender] = 0;
        emit Withdrawn(msg.sender, amount);
        _sendValue(msg.sender, amount);
    }

    // ---------------------------------------------------------------- admin

    function withdrawFees(address payable to) external onlyRole(DEFAULT_ADMIN_ROLE) nonReentrant {
        if (to == address(0)) revert ZeroAddress();
        uint256 amount = _config.feesHeld;
        if (amount == 0) revert NothingToWithdraw();
        _config.feesHeld = 0;
        emit FeesWithdrawn(to, amount);
        _sendValue(to, amount);
    }

    /// @notice New fee terms for jobs funded from now on; funded jobs keep theirs.
    function setFees(uint256 computeFee, uint16 feeBps) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setFees(computeFee, feeBps);
    }

    /// @notice New buyer refund delay for jobs funded from now on.
    function setRefundDelay(uint64 refundDelay) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setRefundDelay(refundDelay);
    }

    // ---------------------------------------------------------------- views

    /// @notice Amount `account` can withdraw.
    function balanceOf(address account) external view returns (uint256) {
        return _balances[account];
    }

    /// @notice Fees of settled jobs not yet withdrawn by the admin.
    function feesHeld() external view returns (uint256) {
        return _config.feesHeld;
    }

    /// @notice State of `buyer`'s job `jobId`: 0 none, 1 funded, 2 settled, 3 refunded.
    function jobState(address buyer, bytes32 jobId) external view returns (uint8) {
        bytes32 stored = _jobs[buyer][jobId];
        if (stored == 0) return JOB_NONE;
        if (stored == _SETTLED) return JOB_SETTLED;
        if (stored == _REFUNDED) return JOB_REFUNDED;
        return JOB_FUNDED;
    }

    function fees() external view returns (uint256 computeFee, uint256 feeBps, uint256 refundDelay) {
        Config memory config = _config;
        return (config.computeFee, config.feeBps, config.refundDelay);
    }

    // ---------------------------------------------------------------- internals

    /// @dev No account holds both roles: a leaked operator key cannot change fees or roles.
    function _grantRole(bytes32 role, address account) internal override returns (bool) {
        bytes32 other = role == OPERATOR_ROLE ? DEFAULT_ADMIN_ROLE : role == DEFAULT_ADMIN_ROLE ? OPERATOR_ROLE : role;
        if (other != role && hasRole(other, account)) revert AdminAndOperatorMustDiffer(account);
        return super._grantRole(role, account);
    }

    function _quote(uint256[] calldata datasetIds, Config memory config)
        private
        view
        returns (uint256 price, uint256 fee, address[] memory owners)
    {
        uint256 count = datasetIds.length;
        if (count == 0) revert NoDatasets();
        owners = new address[](count);
        uint256 datasetsTotal;
        for (uint256 i; i < count; ++i) {
            uint256 id = datasetIds[i];
            // Quadratic, but over calldata and for the handful of datasets a job combines it is
            // cheaper than any set structure in storage.
            for (uint256 j; j < i; ++j) {
                if (datasetIds[j] == id) revert DuplicateDataset(id);
            }
            (address owner, uint256 datasetPrice, bool delisted) = registry.getListing(id);
            if (delisted) revert ListingDelisted(id);
            owners[i] = owner;
            datasetsTotal += datasetPrice;
        }
        price = datasetsTotal + config.computeFee;
        fee = config.computeFee + datasetsTotal * config.feeBps / BPS_DENOMINATOR;
    }

    function _checkFunded(Job calldata job) private view {
        bytes32 stored = _jobs[job.buyer][job.id];
        if (stored == 0) revert UnknownJob(job.id);
        if (stored == _SETTLED || stored == _REFUNDED) revert JobNotFunded(job.id);
        bytes32 terms = keccak256(abi.encode(job.value, job.fee, job.refundAfter, job.datasetIds, job.owners));
        if (stored != terms) revert JobTermsMismatch(job.id);
    }

    /// @dev Forwards all gas (the recipient may be a contract wallet) but copies no return data.
    function _sendValue(address to, uint256 amount) private {
        bool ok;
        assembly ("memory-safe") {
            ok := call(gas(), to, amount, 0, 0, 0, 0)
        }
        if (!ok) revert WithdrawFailed();
    }

    function _setFees(uint256 computeFee, uint16 feeBps) private {
        if (computeFee > type(uint96).max) revert ComputeFeeTooHigh(computeFee);
        if (feeBps > MAX_FEE_BPS) revert FeeBpsTooHigh(feeBps);
        _config.computeFee = uint96(computeFee);
        _config.feeBps = feeBps;
        emit FeesChanged(computeFee, feeBps);
    }

    function _setRefundDelay(uint64 refundDelay) private {
        if (refundDelay > MAX_REFUND_DELAY) revert RefundDelayTooLong(refundDelay);
        _config.refundDelay = uint32(refundDelay);
        emit RefundDelayChanged(refundDelay);
    }
}
