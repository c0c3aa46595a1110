// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";

/// @title DatasetRegistry
/// @notice Catalogue of dataset listings for the AI data marketplace.
/// @dev Gas design: a listing occupies exactly one storage slot (owner, price, delisted flag); the
/// CID, hashes and license only live in the `DatasetListed` event, which indexers and the escrow's
/// off-chain operator read. Owners can act directly or through a relayer with an EIP-712 signature.
contract DatasetRegistry is EIP712, Nonces {
    /// @dev One slot: 160 bits owner + 88 bits price (wei) + 8 bits flag.
    struct Listing {
        address owner;
        uint88 price;
        bool delisted;
    }

    bytes32 public constant LISTING_TYPEHASH = keccak256(
        "Listing(address owner,string cid,bytes32 contentHash,bytes32 metadataHash,string license,"
        "uint256 price,uint256 parentId,uint256 nonce,uint256 deadline)"
    );
    bytes32 public constant PRICE_CHANGE_TYPEHASH =
        keccak256("PriceChange(uint256 listingId,uint256 price,uint256 nonce,uint256 deadline)");
    bytes32 public constant DELISTING_TYPEHASH =
        keccak256("Delisting(uint256 listingId,uint256 nonce,uint256 deadline)");

    /// @notice Number of listings ever created; ids run from 1 to `listingCount`.
    uint256 public listingCount;

    mapping(uint256 listingId => Listing) private _listings;

    event DatasetListed(
        uint256 indexed listingId,
        address indexed owner,
        uint256 indexed parentId,
        string cid,
        bytes32 contentHash,
        bytes32 metadataHash,
        string license,
        uint256 price
    );
    event DatasetPriceChanged(uint256 indexed listingId, uint256 oldPrice, uint256 newPrice);
    event DatasetDelisted(uint256 indexed listingId);

    error EmptyCid();
    error PriceTooHigh();
    error UnknownListing(uint256 listingId);
    error ParentNotOwned(uint256 parentId);
    error NotListingOwner();
    error AlreadyDelisted(uint256 listingId);
    error ListingDelisted(uint256 listingId);
    error SignatureExpired(uint256 deadline);
    error InvalidSignature();

    constructor() EIP712("DatasetRegistry", "1") {}

    // ---------------------------------------------------------------- listing

    /// @notice Lists a dataset owned by the caller.
    /// @param parentId 0 for an original dataset, else a listing of the same owner it derives from.
    function list(
        string calldata cid,
        bytes32 contentHash,
        bytes32 metadataHash,
        string calldata license,
        uint256 price,
        uint256 parentId
    ) external returns (uint256 listingId) {
        return _list(msg.sender, cid, contentHash, metadataHash, license, price, parentId);
    }

    /// @notice Lists a dataset on behalf of `owner`, who signed the EIP-712 `Listing` struct.
    function listFor(
        address owner,
        string calldata cid,
        bytes32 contentHash,
        bytes32 metadataHash,
        string calldata license,
        uint256 price,
        uint256 parentId,
        uint256 deadline,
        bytes calldata signature
    ) external returns (uint256 listingId) {
        _checkDeadline(deadline);
        bytes32 structHash = keccak256(
            abi.encode(
                LISTING_TYPEHASH,
                owner,
                keccak256(bytes(cid)),
                contentHash,
                metadataHash,
                keccak256(bytes(license)),
                price,
                parentId,
                _useNonce(owner),
                deadline
            )
        );
        _checkSigner(owner, structHash, signature);
        return _list(owner, cid, contentHash, metadataHash, license, price, parentId);
    }

    // ---------------------------------------------------------------- price

    function setPrice(uint256 listingId, uint256 newPrice) external {
        _setPrice(msg.sender, listingId, newPrice);
    }

    /// @notice Changes a price on behalf of the listing's owner, who signed `PriceChange`.
    function setPriceFor(uint256 listingId, uint256 newPrice, uint256 deadline, bytes calldata signature)
        external
    {
        _checkDeadline(deadline);
        address owner = _ownerOf(listingId);
        _checkSigner(
            owner,
            keccak256(abi.encode(PRICE_CHANGE_TYPEHASH, listingId, newPrice, _useNonce(owner), deadline)),
            signature
        );
        _setPrice(owner, listingId, newPrice);
    }

    // ---------------------------------------------------------------- delisting

    function delist(uint256 listingId) external {
        _delist(msg.sender, listingId);
    }

    /// @notice Delists on behalf of the listing's owner, who signed `Delisting`.
    function delistFor(uint256 listingId, uint256 deadline, bytes calldata signature) external {
        _checkDeadline(deadline);
        address owner = _ownerOf(listingId);
        _checkSigner(
            owner, keccak256(abi.encode(DELISTING_TYPEHASH, listingId, _useNonce(owner), deadline)), signature
        );
        _delist(owner, listingId);
    }

    // ---------------------------------------------------------------- views

    function getListing(uint256 listingId) external view returns (address owner, uint256 price, bool delisted) {
        Listing memory listing = _listings[listingId];
        if (listing.owner == address(0)) revert UnknownListing(listingId);
        return (listing.owner, listing.price, listing.delisted);
    }

    /// @notice Current price of a listing that can be bought.
    function priceOf(uint256 listingId) external view returns (uint256) {
        return _buyablePrice(listingId);
    }

    /// @notice Sum of the current prices of listings that can all be bought (one call for the escrow).
    function totalPriceOf(uint256[] calldata listingIds) external view returns (uint256 total) {
        uint256 count = listingIds.length;
        for (uint256 i; i < count; ++i) {
            total += _buyablePrice(listingIds[i]);
        }
    }

    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ---------------------------------------------------------------- internals

    function _list(
        address owner,
        string calldata cid,
        bytes32 contentHash,
        bytes32 metadataHash,
        string calldata license,
        uint256 price,
        uint256 parentId
    ) private returns (uint256 listingId) {
        if (bytes(cid).length == 0) revert EmptyCid();
        if (price > type(uint88).max) revert PriceTooHigh();
        if (parentId != 0) {
            address parentOwner = _listings[parentId].owner;
            if (parentOwner == address(0)) revert UnknownListing(parentId);
            if (parentOwner != owner) revert ParentNotOwned(parentId);
        }
        unchecked {
            listingId = ++listingCount;
        }
        _listings[listingId] = Listing({owner: owner, price: uint88(price), delisted: false});
        emit DatasetListed(listingId, owner, parentId, cid, contentHash, metadataHash, license, price);
    }

    function _setPrice(address caller, uint256 listingId, uint256 newPrice) private {
        Listing storage listing = _listings[listingId];
        address owner = listing.owner;
        if (owner == address(0)) revert UnknownListing(listingId);
        if (owner != caller) revert NotListingOwner();
        if (listing.delisted) revert ListingDelisted(listingId);
        if (newPrice > type(uint88).max) revert PriceTooHigh();
        uint256 oldPrice = listing.price;
        listing.price = uint88(newPrice);
        emit DatasetPriceChanged(listingId, oldPrice, newPrice);
    }

    function _delist(address caller, uint256 listingId) private {
        Listing storage listing = _listings[listingId];
        address owner = listing.owner;
        if (owner == address(0)) revert UnknownListing(listingId);
        if (owner != caller) revert NotListingOwner();
        if (listing.delisted) revert AlreadyDelisted(listingId);
        listing.delisted = true;
        emit DatasetDelisted(listingId);
    }

    function _buyablePrice(uint256 listingId) private view returns (uint256) {
        Listing memory listing = _listings[listingId];
        if (listing.owner == address(0)) revert UnknownListing(listingId);
        if (listing.delisted) revert ListingDelisted(listingId);
        return listing.price;
    }

    function _ownerOf(uint256 listingId) private view returns (address owner) {
        owner = _listings[listingId].owner;
        if (owner == address(0)) revert UnknownListing(listingId);
    }

    function _checkDeadline(uint256 deadline) private view {
        if (block.timestamp > deadline) revert SignatureExpired(deadline);
    }

    /// @dev Wrong signer, a replay (nonce already used) and another chain id all produce a digest
    /// that does not recover to `owner`, hence the single error.
    function _checkSigner(address owner, bytes32 structHash, bytes calldata signature) private view {
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(_hashTypedDataV4(structHash), signature);
        if (err != ECDSA.RecoverError.NoError || signer != owner) revert InvalidSignature();
    }
}
