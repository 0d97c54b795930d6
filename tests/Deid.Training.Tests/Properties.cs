// Two cores and CPU-bound tests: running classes in parallel gains nothing, and model construction seeds torch's
// global generator (TorchSharp's initialisers draw from it), which parallel tests would interleave.
[assembly: Xunit.CollectionBehavior(Xunit.CollectionBehavior.CollectionPerAssembly)]
