// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

interface IVault {
    function withdrawEth() external;
}

/// Test-only attacker: holds shares, withdraws ETH and tries to withdraw again from inside receive().
/// The re-entry's failure is recorded rather than bubbled, so the outer withdrawal can succeed and the test can
/// check that exactly one share of revenue arrived.
contract Reentrant {
    IVault public immutable vault;
    uint256 public attempts;
    bool public reentrySucceeded;
    bytes public reentryError;

    constructor(address vault_) {
        vault = IVault(vault_);
    }

    function attack() external {
        vault.withdrawEth();
    }

    receive() external payable {
        if (attempts > 0) return;
        attempts++;
        (bool ok, bytes memory err) = address(vault).call(abi.encodeCall(IVault.withdrawEth, ()));
        reentrySucceeded = ok;
        reentryError = err;
    }
}
