// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {DatasetRegistry} from "./DatasetRegistry.sol";

/// @title TrainingEscrow
/// @notice Holds a buyer's payment for a training job over datasets of the `DatasetRegistry`, then
/// either pays the datasets' owners (one amount per dataset, as valued by the run) plus the
/// marketplace fee, or refunds whoever funded the job. Payouts are credited and pulled with
/// `withdraw`.
/// The payouts do not rest on the operator's word: staked validators re-compute each run and sign
/// an EIP-712 `Attestation` of its report and payouts, and `settle` credits nothing without a
/// quorum of such signatures. Validators earn a share of the job's fee; one that signs two
/// different results for a job can be slashed by anyone holding both signatures.
/// @dev Gas design: a job is one storage slot holding a commitment to its terms while funded and a
/// marker once settled or refunded; the terms live in the `JobFunded` event and are passed back
/// as calldata. A validator is one slot (stake, fees earned, unbonding end, status) that stays
/// non-zero while it validates, so crediting its fee share rewrites a non-zero slot; the terms a
/// settlement applies share one slot with the fees it keeps. Lineage of a
/// model = JobFunded (datasets, owners) + PayeeCredited (one per dataset, in the datasets' order,
/// then one per attesting validator) + JobSettled (model, report, attesting validators).
/// Roles: the admin (DEFAULT_ADMIN_ROLE) sets fees, validator terms and manages roles, the
/// operator settles and refunds; no account may hold both.
contract TrainingEscrow is AccessControl, EIP712, ReentrancyGuardTransient {
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

    /// @dev One slot (200 bits): the fee terms of new jobs and the validator terms that only
    /// staking and slashing read.
    struct Config {
        uint96 computeFee;
        uint16 feeBps;
        uint32 refundDelay;
        uint32 unbondingDelay;
        uint8 validatorsPerRun;
        uint16 slashRewardBps;
    }

    /// @dev One slot (232 bits): all that a settlement reads and writes besides the job, its
    /// payees and attesters: the fees of settled jobs and the validator terms it applies. The
    /// minimum stake is never zero, so a settlement never writes a zero slot.
    struct Settlement {
        uint112 feesHeld;
        uint96 minStake;
        uint8 quorum;
        uint16 validatorFeeBps;
    }

    /// @notice Terms for validators, as the constructor and `setValidatorTerms` take them.
    struct ValidatorTerms {
        uint256 minStake; // wei a validator must keep staked for its attestations to count
        uint64 unbondingDelay; // seconds between `requestUnstake` and `withdrawStake`
        uint8 quorum; // attestations a settlement needs
        uint8 validatorsPerRun; // validators the operator asks to re-compute each run
        uint16 validatorFeeBps; // the validators' share of a job's fee, split among its attesters
        uint16 slashRewardBps; // the reporter's share of a slashed stake; the rest is burned
    }

    /// @dev One slot (240 bits) per validator. `earned` holds its fee shares until `withdraw`, so
    /// that a settlement writes a slot that its stake keeps non-zero.
    struct Validator {
        uint96 stake;
        uint96 earned;
        uint40 availableAt;
        uint8 status;
    }

    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");
    uint256 public constant BPS_DENOMINATOR = 10_000;
    /// @notice Upper bound of the marketplace's share of the datasets' prices (20 %).
    uint256 public constant MAX_FEE_BPS = 2_000;
    /// @notice Upper bound of the buyer's refund delay, so funds are never locked for long.
    uint256 public constant MAX_REFUND_DELAY = 30 days;
    /// @notice Upper bound of the validators' unbonding delay, so stakes are never locked for long.
    uint256 public constant MAX_UNBONDING_DELAY = 30 days;
    bytes32 public constant ATTESTATION_TYPEHASH =
        keccak256("Attestation(bytes32 jobId,bytes32 reportHash,bytes32 payoutsHash)");

    uint8 public constant JOB_NONE = 0;
    uint8 public constant JOB_FUNDED = 1;
    uint8 public constant JOB_SETTLED = 2;
    uint8 public constant JOB_REFUNDED = 3;

    uint8 public constant VALIDATOR_NONE = 0;
    uint8 public constant VALIDATOR_ACTIVE = 1;
    /// @notice Unstake requested: still slashable, and its attestations still count, until it
    /// withdraws its stake.
    uint8 public constant VALIDATOR_LEAVING = 2;
    /// @notice Slashed: its stake is gone and it can never stake again.
    uint8 public constant VALIDATOR_REMOVED = 3;

    /// @dev Markers that replace a job's commitment; no keccak256 output collides with them.
    bytes32 private constant _SETTLED = bytes32(uint256(JOB_SETTLED));
    bytes32 private constant _REFUNDED = bytes32(uint256(JOB_REFUNDED));

    DatasetRegistry public immutable registry;

    Config private _config;
    Settlement private _settlement;
    /// @dev Keyed by the funder, then the job id: a stranger funding a buyer's job id writes a slot
    /// of its own, so it can neither block the buyer's payment nor pass for it.
    mapping(address buyer => mapping(bytes32 jobId => bytes32 commitmentOrMarker)) private _jobs;
    mapping(address account => uint256 amount) private _balances;
    mapping(address validator => Validator) private _validators;
    uint256 private _stakeBurned;

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
    /// @notice `fee` is what the marketplace keeps: the job's fee minus the validators' shares, so
    /// a job's credits plus `fee` equal its value. `validators` are the attesters, ascending; one
    /// array here costs less than an event per attester.
    event JobSettled(
        bytes32 indexed jobId,
        address indexed buyer,
        string modelCid,
        bytes32 reportHash,
        uint256 fee,
        address[] validators
    );
    event JobRefunded(bytes32 indexed jobId, address indexed buyer, uint256 value);
    event Withdrawn(address indexed account, uint256 amount);
    event FeesWithdrawn(address indexed to, uint256 amount);
    event FeesChanged(uint256 computeFee, uint256 feeBps);
    event RefundDelayChanged(uint256 refundDelay);
    event ValidatorTermsChanged(
        uint256 minStake,
        uint256 unbondingDelay,
        uint256 quorum,
        uint256 validatorsPerRun,
        uint256 validatorFeeBps,
        uint256 slashRewardBps
    );
    event Staked(address indexed validator, uint256 amount, uint256 stake);
    event UnstakeRequested(address indexed validator, uint256 availableAt);
    event StakeWithdrawn(address indexed validator, uint256 amount);
    event Slashed(
        address indexed validator, bytes32 indexed jobId, address indexed reporter, uint256 reward, uint256 burned
    );

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
    error MinStakeOutOfRange(uint256 minStake);
    error UnbondingDelayTooLong(uint256 unbondingDelay);
    error QuorumOutOfRange(uint256 quorum, uint256 validatorsPerRun);
    error ValidatorFeeBpsTooHigh(uint256 validatorFeeBps);
    error SlashRewardBpsTooHigh(uint256 slashRewardBps);
    error StakeTooLow(uint256 required, uint256 got);
    error ValidatorRemoved();
    error UnstakePending();
    error NotStaked();
    error UnstakeNotRequested();
    error UnbondingNotOver(uint256 availableAt);
    error QuorumNotReached(uint256 have, uint256 need);
    error NotAValidator(address signer);
    error DuplicateAttester(address signer);
    error AttestersNotSorted();
    error NotConflicting();
    error NotSameSigner(address signerA, address signerB);
    error NothingToSlash(address validator);
    /// @dev Raised by the registry during `quote` / `fund`; declared here so clients decode them.
    error UnknownListing(uint256 listingId);
    error ListingDelisted(uint256 listingId);

    constructor(
        DatasetRegistry registry_,
        address admin,
        address operator,
        uint256 computeFee,
        uint16 feeBps,
        uint64 refundDelay,
        ValidatorTerms memory validatorTerms
    ) EIP712("TrainingEscrow", "2") {
        if (address(registry_) == address(0) || admin == address(0) || operator == address(0)) {
            revert ZeroAddress();
        }
        registry = registry_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(OPERATOR_ROLE, operator);
        _setFees(computeFee, feeBps);
        _setRefundDelay(refundDelay);
        _setValidatorTerms(validatorTerms);
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
    /// amount and each attesting validator its share of the validators' fee, keeps the rest of the
    /// job's fee, records the model.
    /// @dev `amounts[i]` goes to `job.owners[i]`; they must add up to exactly `job.value - job.fee`.
    /// `signatures` are validators' EIP-712 attestations of (job id, `reportHash`, payouts hash of
    /// `job.owners` and `amounts`), at least `quorum()`, ordered by signer, ascending. A signature
    /// of anything else recovers to an unrelated address, hence `NotAValidator`.
    function settle(
        Job calldata job,
        uint256[] calldata amounts,
        string calldata modelCid,
        bytes32 reportHash,
        bytes[] calldata signatures
    ) external onlyRole(OPERATOR_ROLE) {
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
        Settlement memory terms = _settlement;
        (address[] memory validators, uint256 validatorsFee) =
            _creditAttesters(job, amounts, reportHash, signatures, terms);
        // validatorsFee <= job.fee: a share is at most job.fee * 10_000 / 10_000 / count.
        uint256 kept = job.fee - validatorsFee;
        _settlement.feesHeld = SafeCast.toUint112(terms.feesHeld + kept);
        emit JobSettled(job.id, job.buyer, modelCid, reportHash, kept, validators);
    }

    // ---------------------------------------------------------------- withdrawals

    /// @notice Sends the caller's whole credited balance: payouts, refunds, slashing rewards and the
    /// fees it earned as a validator.
    function withdraw() external nonReentrant {
        uint256 amount = _balances[msg.sender];
        uint256 earned = _validators[msg.sender].earned;
        if (amount == 0 && earned == 0) revert NothingToWithdraw();
        if (amount != 0) _balances[msg.sender] = 0;
        if (earned != 0) _validators[msg.sender].earned = 0;
        amount += earned;
        emit Withdrawn(msg.sender, amount);
        _sendValue(msg.sender, amount);
    }

    // ---------------------------------------------------------------- validators

    /// @notice Adds the value sent to the caller's stake, which must then be at least `minStake()`;
    /// from then on the caller's attestations count.
    function stake() external payable {
        Validator memory validator = _validators[msg.sender];
        if (validator.status == VALIDATOR_REMOVED) revert ValidatorRemoved();
        if (validator.status == VALIDATOR_LEAVING) revert UnstakePending();
        uint256 staked = validator.stake + msg.value;
        uint256 required = _settlement.minStake;
        if (staked < required) revert StakeTooLow(required, staked);
        _validators[msg.sender] = Validator({
            stake: SafeCast.toUint96(staked), earned: validator.earned, availableAt: 0, status: VALIDATOR_ACTIVE
        });
        emit Staked(msg.sender, msg.value, staked);
    }

    /// @notice Starts the caller's unbonding: its stake can be withdrawn after `unbondingDelay()`,
    /// during which it can still be slashed for attestations it signed.
    function requestUnstake() external {
        Validator storage validator = _validators[msg.sender];
        uint8 status = validator.status;
        if (status == VALIDATOR_REMOVED) revert ValidatorRemoved();
        if (status == VALIDATOR_LEAVING) revert UnstakePending();
        if (status != VALIDATOR_ACTIVE) revert NotStaked();
        uint256 availableAt = block.timestamp + _config.unbondingDelay;
        validator.status = VALIDATOR_LEAVING;
        validator.availableAt = uint40(availableAt);
        emit UnstakeRequested(msg.sender, availableAt);
    }

    /// @notice Sends the caller its whole stake once its unbonding is over; it may stake again.
    function withdrawStake() external nonReentrant {
        Validator memory validator = _validators[msg.sender];
        if (validator.status == VALIDATOR_REMOVED) revert ValidatorRemoved();
        if (validator.status != VALIDATOR_LEAVING) revert UnstakeNotRequested();
        if (block.timestamp < validator.availableAt) revert UnbondingNotOver(validator.availableAt);
        _validators[msg.sender] =
            Validator({stake: 0, earned: validator.earned, availableAt: 0, status: VALIDATOR_NONE});
        emit StakeWithdrawn(msg.sender, validator.stake);
        _sendValue(msg.sender, validator.stake);
    }

    /// @notice Slashes a validator that attested two different results for one job: anyone may
    /// present both signatures. `slashRewardBps()` of its stake is credited to the caller, the rest
    /// is burned, and the validator is removed for good.
    /// @dev The burned part stays locked in this contract (counted by `stakeBurned()`) rather than
    /// going to the job's buyer: a buyer colluding with a validator could otherwise profit from an
    /// equivocation staged on purpose, and a job id alone does not name a buyer (anyone may fund a
    /// job under any id). A validator may report itself and recover the reporter's share, so the
    /// deterrent is the burned part.
    function slash(
        bytes32 jobId,
        bytes32 reportHashA,
        bytes32 payoutsHashA,
        bytes calldata signatureA,
        bytes32 reportHashB,
        bytes32 payoutsHashB,
        bytes calldata signatureB
    ) external {
        if (reportHashA == reportHashB && payoutsHashA == payoutsHashB) revert NotConflicting();
        address validator = _signerOf(_attestationDigest(jobId, reportHashA, payoutsHashA), signatureA);
        address other = _signerOf(_attestationDigest(jobId, reportHashB, payoutsHashB), signatureB);
        if (validator != other) revert NotSameSigner(validator, other);
        Validator memory record = _validators[validator];
        if (record.stake == 0 || record.status == VALIDATOR_REMOVED) revert NothingToSlash(validator);
        uint256 reward = uint256(record.stake) * _config.slashRewardBps / BPS_DENOMINATOR;
        uint256 burned = record.stake - reward;
        _validators[validator] =
            Validator({stake: 0, earned: record.earned, availableAt: 0, status: VALIDATOR_REMOVED});
        _stakeBurned += burned;
        _balances[msg.sender] += reward;
        emit Slashed(validator, jobId, msg.sender, reward, burned);
    }

    // ---------------------------------------------------------------- admin

    function withdrawFees(address payable to) external onlyRole(DEFAULT_ADMIN_ROLE) nonReentrant {
        if (to == address(0)) revert ZeroAddress();
        uint256 amount = _settlement.feesHeld;
        if (amount == 0) revert NothingToWithdraw();
        _settlement.feesHeld = 0;
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

    /// @notice New validator terms. A stake below a raised `minStake` stops counting until topped
    /// up; `validatorFeeBps` applies to the jobs settled from now on.
    function setValidatorTerms(
        uint256 minStake_,
        uint64 unbondingDelay_,
        uint8 quorum_,
        uint8 validatorsPerRun_,
        uint16 validatorFeeBps_,
        uint16 slashRewardBps_
    ) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setValidatorTerms(
            ValidatorTerms(minStake_, unbondingDelay_, quorum_, validatorsPerRun_, validatorFeeBps_, slashRewardBps_)
        );
    }

    // ---------------------------------------------------------------- views

    /// @notice Amount `account` can withdraw (including the fees it earned as a validator).
    function balanceOf(address account) external view returns (uint256) {
        return _balances[account] + _validators[account].earned;
    }

    /// @notice Fees of settled jobs not yet withdrawn by the admin.
    function feesHeld() external view returns (uint256) {
        return _settlement.feesHeld;
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

    function minStake() external view returns (uint256) {
        return _settlement.minStake;
    }

    function unbondingDelay() external view returns (uint256) {
        return _config.unbondingDelay;
    }

    function quorum() external view returns (uint256) {
        return _settlement.quorum;
    }

    /// @notice How many validators the operator asks to re-compute each run (at least `quorum()`).
    function validatorsPerRun() external view returns (uint256) {
        return _config.validatorsPerRun;
    }

    function validatorFeeBps() external view returns (uint256) {
        return _settlement.validatorFeeBps;
    }

    function slashRewardBps() external view returns (uint256) {
        return _config.slashRewardBps;
    }

    function stakeOf(address account) external view returns (uint256) {
        return _validators[account].stake;
    }

    /// @notice `status`: 0 none, 1 active, 2 leaving (unstake requested), 3 removed (slashed);
    /// `availableAt`: when a leaving validator may withdraw its stake.
    function validatorOf(address account) external view returns (uint256 stake_, uint8 status, uint64 availableAt) {
        Validator memory validator = _validators[account];
        return (validator.stake, validator.status, validator.availableAt);
    }

    /// @notice Whether `account`'s attestations count now: active or leaving, with at least
    /// `minStake()` staked.
    function isValidator(address account) external view returns (bool) {
        return _counts(_validators[account], _settlement.minStake);
    }

    /// @notice Slashed stake that no one will ever withdraw.
    function stakeBurned() external view returns (uint256) {
        return _stakeBurned;
    }

    /// @notice The EIP-712 digest a validator signs for its attestation of a job.
    function attestationDigest(bytes32 jobId, bytes32 reportHash, bytes32 payoutsHash)
        external
        view
        returns (bytes32)
    {
        return _attestationDigest(jobId, reportHash, payoutsHash);
    }

    /// @notice The `payoutsHash` of an attestation: `payees` are the job's owners, in order.
    function payoutsHashOf(address[] calldata payees, uint256[] calldata amounts) external pure returns (bytes32) {
        return keccak256(abi.encode(payees, amounts));
    }

    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
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
        if (stored != _termsHash(job)) revert JobTermsMismatch(job.id);
    }

    /// @dev keccak256(abi.encode(value, fee, refundAfter, datasetIds, owners)) as `fund` commits
    /// to it, with the arrays copied from calldata as they are rather than element by element: an
    /// owner with dirty upper bits makes a hash that no job committed to.
    function _termsHash(Job calldata job) private pure returns (bytes32 hash) {
        (uint256 value, uint256 fee, uint64 refundAfter) = (job.value, job.fee, job.refundAfter);
        uint256[] calldata ids = job.datasetIds;
        address[] calldata owners = job.owners;
        assembly ("memory-safe") {
            let start := mload(0x40)
            let idsSize := shl(5, ids.length)
            let ownersSize := shl(5, owners.length)
            mstore(start, value)
            mstore(add(start, 0x20), fee)
            mstore(add(start, 0x40), refundAfter)
            mstore(add(start, 0x60), 0xa0)
            mstore(add(start, 0x80), add(0xc0, idsSize))
            mstore(add(start, 0xa0), ids.length)
            calldatacopy(add(start, 0xc0), ids.offset, idsSize)
            let second := add(add(start, 0xc0), idsSize)
            mstore(second, owners.length)
            calldatacopy(add(second, 0x20), owners.offset, ownersSize)
            hash := keccak256(start, add(add(0xe0, idsSize), ownersSize))
        }
    }

    /// @dev Checks a settlement's attestations and credits each attester an equal share of the
    /// validators' part of the job's fee (the rounding stays with the marketplace). Returns the
    /// attesters and what they were credited in all.
    function _creditAttesters(
        Job calldata job,
        uint256[] calldata amounts,
        bytes32 reportHash,
        bytes[] calldata signatures,
        Settlement memory terms
    ) private returns (address[] memory validators, uint256 paid) {
        uint256 count = signatures.length;
        if (count < terms.quorum) revert QuorumNotReached(count, terms.quorum);
        bytes32 digest = _attestationDigest(job.id, reportHash, _payoutsHash(job.owners, amounts));
        // count >= quorum >= 1.
        uint256 share = job.fee * terms.validatorFeeBps / BPS_DENOMINATOR / count;
        validators = new address[](count);
        bytes32 jobId = job.id;
        address previous;
        for (uint256 i; i < count; ++i) {
            address signer = _signerOf(digest, _element(signatures, i));
            Validator storage record = _validators[signer];
            // The record is read and written as its one word (stake | earned << 96 |
            // availableAt << 192 | status << 232): one SLOAD and one SSTORE per attester.
            uint256 word;
            assembly ("memory-safe") {
                word := sload(record.slot)
            }
            uint256 status = uint8(word >> 232);
            // As `_counts`, on the word.
            if (status != VALIDATOR_ACTIVE && status != VALIDATOR_LEAVING || uint96(word) < terms.minStake) {
                revert NotAValidator(signer);
            }
            // Ascending order rules out counting one validator twice without a set in storage.
            if (signer <= previous) {
                if (signer == previous) revert DuplicateAttester(signer);
                revert AttestersNotSorted();
            }
            previous = signer;
            SafeCast.toUint96(uint96(word >> 96) + share); // earned + share fits its field
            assembly ("memory-safe") {
                sstore(record.slot, add(word, shl(96, share)))
            }
            validators[i] = signer;
            emit PayeeCredited(signer, jobId, share);
        }
        paid = share * count;
    }

    /// @dev keccak256(abi.encode(payees, amounts)), with both arrays copied from calldata as they
    /// are rather than element by element: the bytes hashed are the ones signed, and an address
    /// with dirty upper bits makes a hash no validator signed.
    function _payoutsHash(address[] calldata payees, uint256[] calldata amounts) private pure returns (bytes32 hash) {
        assembly ("memory-safe") {
            let start := mload(0x40)
            let payeesSize := shl(5, payees.length)
            let amountsSize := shl(5, amounts.length)
            mstore(start, 0x40)
            mstore(add(start, 0x20), add(0x60, payeesSize))
            mstore(add(start, 0x40), payees.length)
            calldatacopy(add(start, 0x60), payees.offset, payeesSize)
            let second := add(add(start, 0x60), payeesSize)
            mstore(second, amounts.length)
            calldatacopy(add(second, 0x20), amounts.offset, amountsSize)
            hash := keccak256(start, add(add(0x80, payeesSize), amountsSize))
        }
    }

    function _counts(Validator memory validator, uint256 required) private pure returns (bool) {
        return (validator.status == VALIDATOR_ACTIVE || validator.status == VALIDATOR_LEAVING)
            && validator.stake >= required;
    }

    function _attestationDigest(bytes32 jobId, bytes32 reportHash, bytes32 payoutsHash) private view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(ATTESTATION_TYPEHASH, jobId, reportHash, payoutsHash)));
    }

    /// @dev `signatures[i]` for `i < signatures.length`, without the checks of the element's offset
    /// and length: an element pointing elsewhere in the calldata only finds bytes that recover to
    /// no one or to a signer who did sign `digest`, and ascending signers rule out counting one
    /// signature twice.
    function _element(bytes[] calldata signatures, uint256 i) private pure returns (bytes calldata signature) {
        assembly ("memory-safe") {
            let element := add(signatures.offset, calldataload(add(signatures.offset, shl(5, i))))
            signature.length := calldataload(element)
            signature.offset := add(element, 0x20)
        }
    }

    /// @dev The signer of `digest`, or the zero address (no one's) for a malformed signature. Read
    /// from calldata: no copy of the signature to memory.
    function _signerOf(bytes32 digest, bytes calldata signature) private pure returns (address signer) {
        if (signature.length != 65) return address(0);
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly ("memory-safe") {
            r := calldataload(signature.offset)
            s := calldataload(add(signature.offset, 0x20))
            v := byte(0, calldataload(add(signature.offset, 0x40)))
        }
        (signer,,) = ECDSA.tryRecover(digest, v, r, s);
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

    function _setValidatorTerms(ValidatorTerms memory terms) private {
        // A zero minimum would let any key attest without putting anything at stake.
        if (terms.minStake == 0 || terms.minStake > type(uint96).max) revert MinStakeOutOfRange(terms.minStake);
        if (terms.unbondingDelay > MAX_UNBONDING_DELAY) revert UnbondingDelayTooLong(terms.unbondingDelay);
        if (terms.quorum == 0 || terms.quorum > terms.validatorsPerRun) {
            revert QuorumOutOfRange(terms.quorum, terms.validatorsPerRun);
        }
        if (terms.validatorFeeBps > BPS_DENOMINATOR) revert ValidatorFeeBpsTooHigh(terms.validatorFeeBps);
        if (terms.slashRewardBps > BPS_DENOMINATOR) revert SlashRewardBpsTooHigh(terms.slashRewardBps);
        _config.unbondingDelay = uint32(terms.unbondingDelay);
        _config.validatorsPerRun = terms.validatorsPerRun;
        _config.slashRewardBps = terms.slashRewardBps;
        _settlement.minStake = uint96(terms.minStake);
        _settlement.quorum = terms.quorum;
        _settlement.validatorFeeBps = terms.validatorFeeBps;
        emit ValidatorTermsChanged(
            terms.minStake,
            terms.unbondingDelay,
            terms.quorum,
            terms.validatorsPerRun,
            terms.validatorFeeBps,
            terms.slashRewardBps
        );
    }
}
