// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

interface IShareMinter {
    function mint(address to, uint256 amount) external;
}

/// Settles one model's shares per epoch. The settler posts a Merkle root of (account, cumulative shares) leaves
/// (OpenZeppelin StandardMerkleTree encoding); after the challenge delay anyone may claim for an account, which
/// mints the difference to what the account has claimed so far. The registry's owner may revoke a pending root.
contract EpochDistributor {
    struct Root {
        bytes32 root;
        uint64 postedAt;
        bool revoked;
    }

    IShareMinter public immutable token;
    address public immutable registry;
    address public immutable settler;
    uint64 public immutable challengeDelay;

    uint256 public latestEpoch;
    mapping(uint256 epoch => Root) public roots;
    /// Cumulative shares already minted to each account: claims are cumulative, so any later root supersedes.
    mapping(address account => uint256) public claimed;

    event RootPosted(uint256 indexed epoch, bytes32 root, uint64 claimableAt);
    event RootRevoked(uint256 indexed epoch);
    event Claimed(uint256 indexed epoch, address indexed account, uint256 amount);

    error NotSettler(address caller);
    error NotRegistryOwner(address caller);
    error EpochNotIncreasing(uint256 epoch, uint256 latestEpoch);
    error EmptyRoot();
    error UnknownEpoch(uint256 epoch);
    error AlreadyRevoked(uint256 epoch);
    error ChallengeWindowClosed(uint256 epoch);
    error NotClaimable(uint256 epoch);
    error InvalidProof();
    error NothingToClaim();

    constructor(address token_, address registry_, address settler_, uint64 challengeDelay_) {
        token = IShareMinter(token_);
        registry = registry_;
        settler = settler_;
        challengeDelay = challengeDelay_;
    }

    function postRoot(uint256 epoch, bytes32 root) external {
        if (msg.sender != settler) revert NotSettler(msg.sender);
        if (epoch <= latestEpoch) revert EpochNotIncreasing(epoch, latestEpoch);
        if (root == bytes32(0)) revert EmptyRoot();
        latestEpoch = epoch;
        roots[epoch] = Root(root, uint64(block.timestamp), false);
        emit RootPosted(epoch, root, uint64(block.timestamp) + challengeDelay);
    }

    /// Owner of the registry (not of this contract), so an ownership transfer there moves the veto too.
    function revokeRoot(uint256 epoch) external {
        if (msg.sender != Ownable(registry).owner()) revert NotRegistryOwner(msg.sender);
        Root storage r = roots[epoch];
        if (r.root == bytes32(0)) revert UnknownEpoch(epoch);
        if (r.revoked) revert AlreadyRevoked(epoch);
        if (block.timestamp >= uint256(r.postedAt) + challengeDelay) revert ChallengeWindowClosed(epoch);
        r.revoked = true;
        emit RootRevoked(epoch);
    }

    function isClaimable(uint256 epoch) public view returns (bool) {
        Root storage r = roots[epoch];
        return r.root != bytes32(0) && !r.revoked && block.timestamp >= uint256(r.postedAt) + challengeDelay;
    }

    function claim(uint256 epoch, address account, uint256 cumulativeShares, bytes32[] calldata proof) external {
        if (!isClaimable(epoch)) revert NotClaimable(epoch);
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(account, cumulativeShares))));
        if (!MerkleProof.verifyCalldata(proof, roots[epoch].root, leaf)) revert InvalidProof();
        uint256 already = claimed[account];
        if (cumulativeShares <= already) revert NothingToClaim();
        claimed[account] = cumulativeShares;
        uint256 amount = cumulativeShares - already;
        emit Claimed(epoch, account, amount);
        token.mint(account, amount);
    }
}
