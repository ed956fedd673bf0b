// The targets tree: contexts -> namespaces -> workloads -> pods, and errors in place.
import assert from "node:assert/strict";
import { test } from "node:test";
import { TargetsModel } from "../src/tree/targetsModel";
import { BLOG, BLOG_POD, FakeBackend, LONE_POD, sandboxBackend } from "./fakes";

test("contexts come first and the current one is marked", async () => {
  const model = new TargetsModel(sandboxBackend());
  const contexts = await model.children(undefined);
  assert.deepEqual(contexts, [
    { kind: "context", context: "podside-sandbox", current: true },
    { kind: "context", context: "prod", current: false },
  ]);
  assert.equal(model.item(contexts[0]!).description, "current");
  assert.equal(model.item(contexts[1]!).description, undefined);
});

test("a namespace lists workloads with their pods under them, and pods without a workload", async () => {
  const backend = sandboxBackend();
  const model = new TargetsModel(backend);
  const nodes = await model.children({ kind: "namespace", context: "podside-sandbox", namespace: "default" });
  assert.deepEqual(backend.calls.at(-1), ["podside.listTargets", { context: "podside-sandbox", namespace: "default" }]);
  assert.deepEqual(nodes, [
    { kind: "workload", context: "podside-sandbox", target: BLOG, pods: [BLOG_POD] },
    { kind: "pod", context: "podside-sandbox", target: LONE_POD },
  ]);
  assert.equal(model.item(nodes[0]!).label, "deployment/blog");
  assert.equal(model.item(nodes[0]!).contextValue, "podside.target");
  const pods = await model.children(nodes[0]);
  assert.deepEqual(pods, [{ kind: "pod", context: "podside-sandbox", target: BLOG_POD }]);
});

test("a backend error shows as the one line in place of the children", async () => {
  const model = new TargetsModel(new FakeBackend({ "podside.listNamespaces": new Error("cannot reach the cluster of context 'prod'\ndetails") }));
  const nodes = await model.children({ kind: "context", context: "prod", current: false });
  assert.deepEqual(nodes, [{ kind: "message", text: "cannot reach the cluster of context 'prod'", error: true }]);
});

test("refresh tells the view to ask again", () => {
  const model = new TargetsModel(sandboxBackend());
  let changed = 0;
  model.onChanged = () => changed++;
  model.refresh();
  assert.equal(changed, 1);
});
