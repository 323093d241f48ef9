// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// The vault hook a share token calls before every balance change.
interface IShareHook {
    function onBalanceChange(address from, address to, uint256 amount) external;
}

/// Shares of one model (18 decimals). Only the model's distributor mints them; every balance change is reported
/// to the revenue vault first, so dividends earned before a transfer stay with the sender.
contract ShareToken is ERC20 {
    /// The registry that deployed the token; it wires vault and distributor once (they need the token's address).
    address private immutable _wirer;
    address public vault;
    address public distributor;

    error NotDistributor(address caller);
    error AlreadyWired();
    error NotWirer(address caller);

    constructor(string memory name_, string memory symbol_, address wirer_) ERC20(name_, symbol_) {
        _wirer = wirer_;
    }

    function wire(address vault_, address distributor_) external {
        if (msg.sender != _wirer) revert NotWirer(msg.sender);
        if (vault != address(0)) revert AlreadyWired();
        vault = vault_;
        distributor = distributor_;
    }

    function mint(address to, uint256 amount) external {
        if (msg.sender != distributor) revert NotDistributor(msg.sender);
        _mint(to, amount);
    }

    function _update(address from, address to, uint256 value) internal override {
        // Not wired yet means nothing can move: only the distributor mints, and it is set together with the vault.
        IShareHook(vault).onBalanceChange(from, to, value);
        super._update(from, to, value);
    }
}
