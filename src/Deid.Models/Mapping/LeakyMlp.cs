using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using F = TorchSharp.torch.nn.functional;

namespace Deid.Models.Mapping;

/// <summary>The fully connected stack M and D_W share: linear layers with LeakyReLU between them, none after the last.</summary>
internal static class LeakyMlp
{
    public static ModuleList<Linear> Build(long inputDim, IReadOnlyList<long> widths)
    {
        var list = new List<Linear>();
        long prev = inputDim;
        foreach (var w in widths) { list.Add(Linear(prev, w)); prev = w; }
        return ModuleList(list.ToArray());
    }

    public static Tensor Run(ModuleList<Linear> layers, Tensor x, double negativeSlope)
    {
        using var scope = NewDisposeScope();
        var y = x;
        for (int i = 0; i < layers.Count; i++)
        {
            y = layers[i].call(y);
            if (i < layers.Count - 1) y = F.leaky_relu(y, negativeSlope);
        }
        return y.MoveToOuterDisposeScope();
    }
}
