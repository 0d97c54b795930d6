using TorchSharp;
using static TorchSharp.torch;

namespace Deid.Models.Encoders;

/// <summary>
/// PyTorch's <c>state_dict()</c> order: each module's own parameters, then its own buffers, then its
/// children depth first. TorchSharp's default lists every parameter of the tree before any buffer,
/// which would make our key lists differ in order from the published checkpoints' even when the
/// names agree.
/// </summary>
public static class PyTorchOrder
{
    public static Dictionary<string, Tensor> StateDict(nn.Module module, Dictionary<string, Tensor>? destination = null, string? prefix = null)
    {
        destination ??= new Dictionary<string, Tensor>();
        Collect(module, string.IsNullOrEmpty(prefix) ? "" : prefix + ".", destination);
        return destination;
    }

    private static void Collect(nn.Module module, string prefix, Dictionary<string, Tensor> destination)
    {
        foreach (var (name, p) in module.named_parameters(recurse: false))
            destination.TryAdd(prefix + name, p);
        foreach (var (name, b) in module.named_buffers(recurse: false))
            destination.TryAdd(prefix + name, b);
        foreach (var (name, child) in module.named_children())
            Collect(child, prefix + name + ".", destination);
    }

    /// <summary>Names and shapes in state_dict order (for import checks against a checkpoint).</summary>
    public static IReadOnlyList<(string Name, long[] Shape)> KeysAndShapes(nn.Module module) =>
        StateDict(module).Select(kv => (kv.Key, kv.Value.shape)).ToList();

    /// <summary>Channel count scaled by a width multiplier (1 keeps the published architecture).</summary>
    internal static long Scale(long channels, double width) =>
        width == 1.0 ? channels : Math.Max(1, (long)Math.Round(channels * width));
}
