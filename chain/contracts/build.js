#!/usr/bin/env node
// Compiles the marketplace contracts with solc-js and writes one reproducible JSON artifact per
// contract to chain/contracts/build/. `--check` rebuilds in memory and fails if a committed
// artifact differs (or is missing / stale), so CI catches sources edited without a rebuild.
"use strict";

const crypto = require("crypto");
const fs = require("fs");
const path = require("path");

const ROOT = path.resolve(__dirname, "..", "..");
const CONTRACTS_DIR = path.join(ROOT, "chain", "contracts");
const BUILD_DIR = path.join(CONTRACTS_DIR, "build");
const NODE_MODULES = path.join(ROOT, "node_modules");

const solc = require(path.join(NODE_MODULES, "solc"));

const SETTINGS = {
  evmVersion: "cancun",
  viaIR: true,
  optimizer: { enabled: true, runs: 200 },
  // No IPFS/Swarm hash of the metadata in the bytecode: the bytecode then depends only on the
  // sources and settings, not on the folder the repository is checked out in.
  metadata: { bytecodeHash: "none" },
  outputSelection: {
    "*": { "*": ["abi", "metadata", "evm.bytecode.object", "evm.deployedBytecode.object"] },
  },
};

function toPosix(p) {
  return p.split(path.sep).join("/");
}

/** Every .sol file under chain/contracts (including test/), as repo-relative source names. */
function findSources(dir) {
  const found = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== "build" && entry.name !== "node_modules") found.push(...findSources(full));
    } else if (entry.name.endsWith(".sol")) {
      found.push(toPosix(path.relative(ROOT, full)));
    }
  }
  return found.sort();
}

function compile() {
  const read = new Map(); // source name -> content, for every file the compiler asked for

  const readSource = (name) => {
    const candidates = name.startsWith("chain/")
      ? [path.join(ROOT, name)]
      : [path.join(NODE_MODULES, name), path.join(ROOT, name)];
    for (const file of candidates) {
      if (fs.existsSync(file)) {
        const content = fs.readFileSync(file, "utf8");
        read.set(name, content);
        return content;
      }
    }
    return null;
  };

  const sources = {};
  for (const name of findSources(CONTRACTS_DIR)) sources[name] = { content: readSource(name) };

  const input = { language: "Solidity", sources, settings: SETTINGS };
  const output = JSON.parse(
    solc.compile(JSON.stringify(input), {
      import: (name) => {
        const content = readSource(name);
        return content === null ? { error: `File not found: ${name}` } : { contents: content };
      },
    }),
  );

  const errors = (output.errors || []).filter((e) => e.severity === "error");
  // Warnings about our own sources only; OpenZeppelin's (e.g. its transient-storage notice) are known.
  for (const e of output.errors || []) {
    const file = e.sourceLocation ? e.sourceLocation.file : "";
    if (e.severity !== "error" && file.startsWith("chain/")) process.stderr.write(`${e.formattedMessage}\n`);
  }
  if (errors.length) {
    for (const e of errors) process.stderr.write(`${e.formattedMessage}\n`);
    throw new Error(`compilation failed with ${errors.length} error(s)`);
  }

  const artifacts = new Map(); // file name -> JSON text
  for (const sourceName of Object.keys(output.contracts).sort()) {
    if (!sourceName.startsWith("chain/contracts/")) continue;
    for (const contractName of Object.keys(output.contracts[sourceName]).sort()) {
      const compiled = output.contracts[sourceName][contractName];
      // Interfaces and abstract contracts have no bytecode: nothing to deploy, no artifact.
      if (!compiled.evm.bytecode.object) continue;
      const metadata = JSON.parse(compiled.metadata);
      const hash = crypto.createHash("sha256");
      for (const dep of Object.keys(metadata.sources).sort()) {
        hash.update(dep).update("\0").update(read.get(dep)).update("\0");
      }
      const artifact = {
        contractName,
        sourceName,
        compiler: `solc ${metadata.compiler.version}`,
        abi: compiled.abi,
        bytecode: `0x${compiled.evm.bytecode.object}`,
        deployedBytecode: `0x${compiled.evm.deployedBytecode.object}`,
        sourceHash: `0x${hash.digest("hex")}`,
      };
      const fileName = `${contractName}.json`;
      if (artifacts.has(fileName)) throw new Error(`two contracts named ${contractName}`);
      artifacts.set(fileName, `${JSON.stringify(artifact, null, 2)}\n`);
    }
  }
  return artifacts;
}

function main() {
  const check = process.argv.includes("--check");
  const artifacts = compile();

  if (check) {
    const problems = [];
    for (const [fileName, text] of artifacts) {
      const file = path.join(BUILD_DIR, fileName);
      if (!fs.existsSync(file)) problems.push(`missing: ${fileName}`);
      else if (fs.readFileSync(file, "utf8") !== text) problems.push(`differs: ${fileName}`);
    }
    const existing = fs.existsSync(BUILD_DIR) ? fs.readdirSync(BUILD_DIR) : [];
    for (const fileName of existing.filter((f) => f.endsWith(".json")).sort()) {
      if (!artifacts.has(fileName)) problems.push(`stale (no such contract): ${fileName}`);
    }
    if (problems.length) {
      process.stderr.write(
        "Contract artifacts in chain/contracts/build/ do not match the sources:\n" +
          problems.map((p) => `  ${p}\n`).join("") +
          "Run `node chain/contracts/build.js` and commit the result.\n",
      );
      process.exit(1);
    }
    process.stdout.write(`${artifacts.size} artifacts up to date\n`);
    return;
  }

  fs.mkdirSync(BUILD_DIR, { recursive: true });
  for (const fileName of fs.readdirSync(BUILD_DIR)) {
    if (fileName.endsWith(".json") && !artifacts.has(fileName)) fs.unlinkSync(path.join(BUILD_DIR, fileName));
  }
  for (const [fileName, text] of artifacts) {
    fs.writeFileSync(path.join(BUILD_DIR, fileName), text);
    process.stdout.write(`wrote chain/contracts/build/${fileName}\n`);
  }
}

try {
  main();
} catch (err) {
  process.stderr.write(`build.js: ${err.message}\n`);
  process.exit(1);
}
