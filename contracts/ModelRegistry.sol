// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ShareToken} from "./ShareToken.sol";
import {RevenueVault} from "./RevenueVault.sol";
import {EpochDistributor} from "./EpochDistributor.sol";

/// Registry of models: each registration deploys the model's share token, revenue vault and epoch distributor.
contract ModelRegistry is Ownable {
    struct Model {
        address token;
        address vault;
        address distributor;
    }

    mapping(string modelId => Model) private _models;
    string[] private _ids;

    event ModelRegistered(string modelId, address token, address vault, address distributor);

    error ModelExists(string modelId);
    error EmptyModelId();
    error ZeroAddress();

    constructor(address initialOwner) Ownable(initialOwner) {}

    function registerModel(
        string calldata modelId,
        string calldata name,
        string calldata symbol,
        address settler,
        uint64 challengeDelay,
        address paymentToken
    ) external onlyOwner returns (address token, address vault, address distributor) {
        if (bytes(modelId).length == 0) revert EmptyModelId();
        if (_models[modelId].token != address(0)) revert ModelExists(modelId);
        if (settler == address(0) || paymentToken == address(0)) revert ZeroAddress();
        ShareToken share = new ShareToken(name, symbol, address(this));
        token = address(share);
        vault = address(new RevenueVault(token, paymentToken));
        distributor = address(new EpochDistributor(token, address(this), settler, challengeDelay));
        share.wire(vault, distributor);
        _models[modelId] = Model(token, vault, distributor);
        _ids.push(modelId);
        emit ModelRegistered(modelId, token, vault, distributor);
    }

    function model(string calldata modelId) external view returns (address token, address vault, address distributor) {
        Model storage m = _models[modelId];
        return (m.token, m.vault, m.distributor);
    }

    function modelIds() external view returns (string[] memory) {
        return _ids;
    }
}
