// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

/// Revenue of one model, in ETH and in one ERC-20, paid out pro rata to share holders.
///
/// Accounting: "magnified dividend per share" with corrections. Each deposit d at share supply S adds
/// floor(d * 2^128 / S) to the per-share accumulator P. A holder's cumulative earnings are
/// floor((P * balance + correction) / 2^128); a balance change of v at accumulator P moves P * v of correction
/// from receiver to sender, so earnings before the change stay where they were, exactly (integer arithmetic).
/// Dust (paid in but owed to nobody) = sum over deposits of (d*2^128 mod S)/2^128 + the holders' floor remainders,
/// which is < (holders with earnings) + deposits * maxSupply / 2^128, i.e. at most the holder count in practice.
contract RevenueVault is ReentrancyGuard {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;
    using SafeCast for int256;

    uint256 private constant MAGNITUDE = 2 ** 128;

    /// One accumulator per asset, so ETH and token revenue are accounted independently.
    struct Book {
        uint256 perShare;
        uint256 totalDeposited;
        mapping(address => int256) correction;
        mapping(address => uint256) withdrawn;
    }

    IERC20 public immutable shareToken;
    IERC20 public immutable paymentToken;
    Book private _eth;
    Book private _token;

    event RevenueDeposited(address indexed asset, address indexed from, uint256 amount);
    event Withdrawn(address indexed asset, address indexed to, uint256 amount);

    error NoShares();
    error NotShareToken(address caller);
    error NothingToWithdraw();

    constructor(address shareToken_, address paymentToken_) {
        shareToken = IERC20(shareToken_);
        paymentToken = IERC20(paymentToken_);
    }

    receive() external payable {
        _deposit(_eth, address(0), msg.value);
    }

    function depositEth() external payable {
        _deposit(_eth, address(0), msg.value);
    }

    /// Pulls `amount` from the caller (approve first); credits what actually arrived.
    function depositToken(uint256 amount) external nonReentrant {
        uint256 before = paymentToken.balanceOf(address(this));
        paymentToken.safeTransferFrom(msg.sender, address(this), amount);
        _deposit(_token, address(paymentToken), paymentToken.balanceOf(address(this)) - before);
    }

    function withdrawEth() external nonReentrant {
        uint256 amount = _take(_eth, address(0));
        Address.sendValue(payable(msg.sender), amount);
    }

    function withdrawToken() external nonReentrant {
        uint256 amount = _take(_token, address(paymentToken));
        paymentToken.safeTransfer(msg.sender, amount);
    }

    /// Called by the share token before every mint, transfer or burn.
    function onBalanceChange(address from, address to, uint256 amount) external {
        if (msg.sender != address(shareToken)) revert NotShareToken(msg.sender);
        _move(_eth, from, to, amount);
        _move(_token, from, to, amount);
    }

    function withdrawableEth(address account) external view returns (uint256) {
        return _withdrawable(_eth, account);
    }

    function withdrawableToken(address account) external view returns (uint256) {
        return _withdrawable(_token, account);
    }

    function totalEthDeposited() external view returns (uint256) {
        return _eth.totalDeposited;
    }

    function totalTokenDeposited() external view returns (uint256) {
        return _token.totalDeposited;
    }

    function _deposit(Book storage book, address asset, uint256 amount) private {
        uint256 supply = shareToken.totalSupply();
        if (supply == 0) revert NoShares();
        book.perShare += (amount * MAGNITUDE) / supply;
        book.totalDeposited += amount;
        emit RevenueDeposited(asset, msg.sender, amount);
    }

    /// Effects before the transfer the caller makes (checks-effects-interactions).
    function _take(Book storage book, address asset) private returns (uint256 amount) {
        amount = _withdrawable(book, msg.sender);
        if (amount == 0) revert NothingToWithdraw();
        book.withdrawn[msg.sender] += amount;
        emit Withdrawn(asset, msg.sender, amount);
    }

    function _move(Book storage book, address from, address to, uint256 amount) private {
        int256 shift = (book.perShare * amount).toInt256();
        if (from != address(0)) book.correction[from] += shift;
        if (to != address(0)) book.correction[to] -= shift;
    }

    function _withdrawable(Book storage book, address account) private view returns (uint256) {
        int256 magnified = (book.perShare * shareToken.balanceOf(account)).toInt256() + book.correction[account];
        return magnified.toUint256() / MAGNITUDE - book.withdrawn[account];
    }
}
