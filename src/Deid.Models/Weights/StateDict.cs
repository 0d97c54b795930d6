using static TorchSharp.torch;

namespace Deid.Models.Weights;

/// <summary>Strict state-dict loading: every missing, unexpected or mis-shaped tensor is named in one error.</summary>
public static class StateDict
{
    /// <summary>
    /// Copies <paramref name="tensors"/> into the module's parameters and buffers (dtype and device of the module
    /// are kept). Checkpoints written before PyTorch 0.4.1 lack BatchNorm's num_batches_tracked, which is harmless.
    /// </summary>
    public static void LoadStrict(nn.Module module, IReadOnlyDictionary<string, Tensor> tensors, bool allowMissingNumBatchesTracked = true)
    {
        var own = module.state_dict();
        var problems = new List<string>();
        foreach (var (name, t) in own)
        {
            if (!tensors.TryGetValue(name, out var src))
            {
                if (!(allowMissingNumBatchesTracked && name.EndsWith("num_batches_tracked", StringComparison.Ordinal)))
                    problems.Add($"missing '{name}' {Shape(t.shape)}");
            }
            else if (!t.shape.SequenceEqual(src.shape))
                problems.Add($"'{name}' has shape {Shape(src.shape)} in the file, the network expects {Shape(t.shape)}");
        }
        foreach (var name in tensors.Keys)
            if (!own.ContainsKey(name)) problems.Add($"unexpected '{name}'");
        if (problems.Count > 0)
            throw new WeightsException($"weights do not fit {module.GetType().Name}: " + string.Join("; ", problems.Take(12))
                                       + (problems.Count > 12 ? $"; … and {problems.Count - 12} more" : ""));
        using (no_grad())
        {
            foreach (var (name, t) in own)
                if (tensors.TryGetValue(name, out var src))
                {
                    using var converted = src.to(t.dtype, t.device);
                    t.copy_(converted);
                }
        }
    }

    /// <summary>All tensors of a safetensors file whose names start with <paramref name="prefix"/>, prefix stripped.</summary>
    public static Dictionary<string, Tensor> FromSafeTensors(string path, string prefix = "") => SafeTensors.LoadAll(path, prefix);

    /// <summary>Loads a safetensors file into a module strictly and disposes the temporary CPU tensors.</summary>
    public static void LoadFile(nn.Module module, string path, string prefix = "")
    {
        var d = FromSafeTensors(path, prefix);
        try { LoadStrict(module, d); }
        finally { foreach (var t in d.Values) t.Dispose(); }
    }

    public static string Shape(long[] shape) => "[" + string.Join(",", shape) + "]";
}
