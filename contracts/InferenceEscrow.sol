// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

interface IRevenueVault {
    function depositEth() external payable;
}

/// @title InferenceEscrow
/// @notice Requesters of inference deposit ETH here; the settlement key draws metered usage from a requester's
/// balance into the model's revenue vault, where share holders withdraw it pro rata. A requester can take back
/// what is unspent, but only after announcing it `withdrawDelay` seconds ahead, so usage already served (and
/// metered off chain) can still be charged before the money leaves.
contract InferenceEscrow is ReentrancyGuard {
    address public immutable settler;
    uint64 public immutable withdrawDelay;

    mapping(address => uint256) public balanceOf;
    mapping(address => uint256) public pendingWithdrawal;
    mapping(address => uint64) public unlockAt;
    /// Usage identifiers already charged: the settlement key may resend a charge it cannot tell was mined (a crash
    /// between the transaction and its record), and the payer must still pay once.
    mapping(bytes32 => bool) public charged;

    event Deposited(address indexed payer, uint256 amount);
    event Charged(address indexed payer, address indexed vault, uint256 amount, bytes32 usage);
    event WithdrawalRequested(address indexed payer, uint256 amount, uint64 unlockAt);
    event Withdrawn(address indexed payer, uint256 amount);

    error NotSettler();
    error InsufficientBalance(uint256 balance, uint256 needed);
    error NothingToWithdraw();
    error StillLocked(uint64 unlockAt);
    error ZeroAddress();
    error AlreadyCharged(bytes32 usage);

    constructor(address settler_, uint64 withdrawDelay_) {
        if (settler_ == address(0)) revert ZeroAddress();
        settler = settler_;
        withdrawDelay = withdrawDelay_;
    }

    function deposit() external payable {
        balanceOf[msg.sender] += msg.value;
        emit Deposited(msg.sender, msg.value);
    }

    /// @notice Moves `amount` of `payer`'s balance into `vault` as revenue; `usage` names the metered requests and
    /// is charged at most once (a second charge with it reverts AlreadyCharged, whatever its payer or amount).
    function charge(address payer, address vault, uint256 amount, bytes32 usage) external nonReentrant {
        if (msg.sender != settler) revert NotSettler();
        if (vault == address(0)) revert ZeroAddress();
        if (charged[usage]) revert AlreadyCharged(usage);
        uint256 balance = balanceOf[payer];
        if (balance < amount) revert InsufficientBalance(balance, amount);
        balanceOf[payer] = balance - amount;
        charged[usage] = true;
        emit Charged(payer, vault, amount, usage);
        IRevenueVault(vault).depositEth{value: amount}();
    }

    /// @notice Announces a withdrawal; it can be taken after `withdrawDelay` (a new request restarts the clock).
    function requestWithdrawal(uint256 amount) external {
        uint256 balance = balanceOf[msg.sender];
        if (amount == 0) revert NothingToWithdraw();
        if (amount > balance) revert InsufficientBalance(balance, amount);
        uint64 at = uint64(block.timestamp) + withdrawDelay;
        pendingWithdrawal[msg.sender] = amount;
        unlockAt[msg.sender] = at;
        emit WithdrawalRequested(msg.sender, amount, at);
    }

    /// @notice Pays out the announced withdrawal (capped by what charges left of the balance).
    function withdraw() external nonReentrant {
        uint256 amount = pendingWithdrawal[msg.sender];
        if (amount == 0) revert NothingToWithdraw();
        if (block.timestamp < unlockAt[msg.sender]) revert StillLocked(unlockAt[msg.sender]);
        uint256 balance = balanceOf[msg.sender];
        if (amount > balance) amount = balance;
        pendingWithdrawal[msg.sender] = 0;
        balanceOf[msg.sender] = balance - amount;
        emit Withdrawn(msg.sender, amount);
        Address.sendValue(payable(msg.sender), amount);
    }
}
