using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using F = TorchSharp.torch.nn.functional;

namespace Deid.Models.Encoders;

// The building blocks of torchvision 0.14's Inception-v3. Field names are the torchvision attribute
// names (RegisterComponents uses them as state_dict keys) and are declared in torchvision's
// assignment order, so published checkpoints load by name. A width multiplier scales every channel
// count for fast random-init tests; 1.0 is the published network.

/// <summary>conv (no bias) → BatchNorm (eps 1e-3) → ReLU.</summary>
public sealed class BasicConv2d : Module<Tensor, Tensor>
{
    private readonly Conv2d conv;
    private readonly BatchNorm2d bn;

    private const double Eps = 1e-3;

    public long OutChannels { get; }

    public BasicConv2d(long inChannels, long outChannels, long kernelSize, long stride = 1, long padding = 0)
        : this(inChannels, outChannels, (kernelSize, kernelSize), (stride, stride), (padding, padding)) { }

    public BasicConv2d(long inChannels, long outChannels, (long, long) kernelSize, (long, long)? stride = null, (long, long)? padding = null)
        : base(nameof(BasicConv2d))
    {
        OutChannels = outChannels;
        conv = Conv2d(inChannels, outChannels, kernelSize, stride ?? (1, 1), padding ?? (0, 0), bias: false);
        bn = BatchNorm2d(outChannels, eps: Eps);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var y = conv.call(x);
        if (training || torch.is_grad_enabled())
            return F.relu(bn.call(y)).MoveToOuterDisposeScope();
        // Inference: BatchNorm and ReLU applied in place on the conv output. Every activation here is
        // above the process's fixed 256 KiB mmap threshold (Deid.Media.NativeMemory), so each new tensor
        // costs fresh zeroed pages; bn → relu allocated two more per conv (~20% of the batch-1 CPU time).
        // The per-channel terms are recomputed each call (Cout elements) so they always follow the
        // current running stats and affine parameters: no cache to invalidate. Only without autograd,
        // since mul_ would overwrite what the grad of bn.weight needs.
        var (scale, shift) = EvalAffine();
        return y.mul_(scale).add_(shift).relu_().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Eval-mode BatchNorm as y·scale + shift, per channel, shaped [1,C,1,1]; the same terms libtorch's
    /// CPU batch_norm forms (invstd = 1/sqrt(var + eps)).
    /// </summary>
    internal (Tensor Scale, Tensor Shift) EvalAffine()
    {
        var invstd = bn.running_var!.add(Eps).sqrt_().reciprocal_();
        var scale = bn.weight is null ? invstd : invstd.mul_(bn.weight);
        var shift = bn.running_mean!.mul(scale).neg_();
        if (bn.bias is not null) shift.add_(bn.bias);
        return (scale.view(1, -1, 1, 1), shift.view(1, -1, 1, 1));
    }

    public override Dictionary<string, Tensor> state_dict(Dictionary<string, Tensor>? destination = null, string? prefix = null)
        => PyTorchOrder.StateDict(this, destination, prefix);
}

/// <summary>35×35 block (Mixed_5b..5d): 1x1, 5x5, double 3x3 and pooled branches.</summary>
public sealed class InceptionA : Module<Tensor, Tensor>
{
    private readonly BasicConv2d branch1x1, branch5x5_1, branch5x5_2, branch3x3dbl_1, branch3x3dbl_2, branch3x3dbl_3, branch_pool;

    public long OutChannels { get; }

    public InceptionA(long inChannels, long poolFeatures, double width = 1.0) : base(nameof(InceptionA))
    {
        long S(long c) => PyTorchOrder.Scale(c, width);
        branch1x1 = new BasicConv2d(inChannels, S(64), 1);
        branch5x5_1 = new BasicConv2d(inChannels, S(48), 1);
        branch5x5_2 = new BasicConv2d(S(48), S(64), 5, padding: 2);
        branch3x3dbl_1 = new BasicConv2d(inChannels, S(64), 1);
        branch3x3dbl_2 = new BasicConv2d(S(64), S(96), 3, padding: 1);
        branch3x3dbl_3 = new BasicConv2d(S(96), S(96), 3, padding: 1);
        branch_pool = new BasicConv2d(inChannels, S(poolFeatures), 1);
        OutChannels = S(64) + S(64) + S(96) + S(poolFeatures);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var b1 = branch1x1.call(x);
        var b5 = branch5x5_2.call(branch5x5_1.call(x));
        var b3 = branch3x3dbl_3.call(branch3x3dbl_2.call(branch3x3dbl_1.call(x)));
        // torchvision pools with count_include_pad=True (the FID variant does not).
        var bp = branch_pool.call(F.avg_pool2d(x, 3, 1, 1, count_include_pad: true));
        return torch.cat(new[] { b1, b5, b3, bp }, 1).MoveToOuterDisposeScope();
    }

    public override Dictionary<string, Tensor> state_dict(Dictionary<string, Tensor>? destination = null, string? prefix = null)
        => PyTorchOrder.StateDict(this, destination, prefix);
}

/// <summary>Grid reduction 35→17 (Mixed_6a).</summary>
public sealed class InceptionB : Module<Tensor, Tensor>
{
    private readonly BasicConv2d branch3x3, branch3x3dbl_1, branch3x3dbl_2, branch3x3dbl_3;

    public long OutChannels { get; }

    public InceptionB(long inChannels, double width = 1.0) : base(nameof(InceptionB))
    {
        long S(long c) => PyTorchOrder.Scale(c, width);
        branch3x3 = new BasicConv2d(inChannels, S(384), 3, stride: 2);
        branch3x3dbl_1 = new BasicConv2d(inChannels, S(64), 1);
        branch3x3dbl_2 = new BasicConv2d(S(64), S(96), 3, padding: 1);
        branch3x3dbl_3 = new BasicConv2d(S(96), S(96), 3, stride: 2);
        OutChannels = S(384) + S(96) + inChannels;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var b3 = branch3x3.call(x);
        var bd = branch3x3dbl_3.call(branch3x3dbl_2.call(branch3x3dbl_1.call(x)));
        var bp = F.max_pool2d(x, 3, 2);
        return torch.cat(new[] { b3, bd, bp }, 1).MoveToOuterDisposeScope();
    }

    public override Dictionary<string, Tensor> state_dict(Dictionary<string, Tensor>? destination = null, string? prefix = null)
        => PyTorchOrder.StateDict(this, destination, prefix);
}

/// <summary>17×17 block with factorised 7x7 convolutions (Mixed_6b..6e).</summary>
public sealed class InceptionC : Module<Tensor, Tensor>
{
    private readonly BasicConv2d branch1x1;
    private readonly BasicConv2d branch7x7_1, branch7x7_2, branch7x7_3;
    private readonly BasicConv2d branch7x7dbl_1, branch7x7dbl_2, branch7x7dbl_3, branch7x7dbl_4, branch7x7dbl_5;
    private readonly BasicConv2d branch_pool;

    public long OutChannels { get; }

    public InceptionC(long inChannels, long channels7x7, double width = 1.0) : base(nameof(InceptionC))
    {
        long S(long c) => PyTorchOrder.Scale(c, width);
        long c7 = S(channels7x7);
        branch1x1 = new BasicConv2d(inChannels, S(192), 1);
        branch7x7_1 = new BasicConv2d(inChannels, c7, 1);
        branch7x7_2 = new BasicConv2d(c7, c7, (1, 7), padding: (0, 3));
        branch7x7_3 = new BasicConv2d(c7, S(192), (7, 1), padding: (3, 0));
        branch7x7dbl_1 = new BasicConv2d(inChannels, c7, 1);
        branch7x7dbl_2 = new BasicConv2d(c7, c7, (7, 1), padding: (3, 0));
        branch7x7dbl_3 = new BasicConv2d(c7, c7, (1, 7), padding: (0, 3));
        branch7x7dbl_4 = new BasicConv2d(c7, c7, (7, 1), padding: (3, 0));
        branch7x7dbl_5 = new BasicConv2d(c7, S(192), (1, 7), padding: (0, 3));
        branch_pool = new BasicConv2d(inChannels, S(192), 1);
        OutChannels = 4 * S(192);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var b1 = branch1x1.call(x);
        var b7 = branch7x7_3.call(branch7x7_2.call(branch7x7_1.call(x)));
        var bd = branch7x7dbl_1.call(x);
        bd = branch7x7dbl_2.call(bd);
        bd = branch7x7dbl_3.call(bd);
        bd = branch7x7dbl_4.call(bd);
        bd = branch7x7dbl_5.call(bd);
        var bp = branch_pool.call(F.avg_pool2d(x, 3, 1, 1, count_include_pad: true));
        return torch.cat(new[] { b1, b7, bd, bp }, 1).MoveToOuterDisposeScope();
    }

    public override Dictionary<string, Tensor> state_dict(Dictionary<string, Tensor>? destination = null, string? prefix = null)
        => PyTorchOrder.StateDict(this, destination, prefix);
}

/// <summary>Grid reduction 17→8 (Mixed_7a).</summary>
public sealed class InceptionD : Module<Tensor, Tensor>
{
    private readonly BasicConv2d branch3x3_1, branch3x3_2;
    private readonly BasicConv2d branch7x7x3_1, branch7x7x3_2, branch7x7x3_3, branch7x7x3_4;

    public long OutChannels { get; }

    public InceptionD(long inChannels, double width = 1.0) : base(nameof(InceptionD))
    {
        long S(long c) => PyTorchOrder.Scale(c, width);
        branch3x3_1 = new BasicConv2d(inChannels, S(192), 1);
        branch3x3_2 = new BasicConv2d(S(192), S(320), 3, stride: 2);
        branch7x7x3_1 = new BasicConv2d(inChannels, S(192), 1);
        branch7x7x3_2 = new BasicConv2d(S(192), S(192), (1, 7), padding: (0, 3));
        branch7x7x3_3 = new BasicConv2d(S(192), S(192), (7, 1), padding: (3, 0));
        branch7x7x3_4 = new BasicConv2d(S(192), S(192), 3, stride: 2);
        OutChannels = S(320) + S(192) + inChannels;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var b3 = branch3x3_2.call(branch3x3_1.call(x));
        var b7 = branch7x7x3_4.call(branch7x7x3_3.call(branch7x7x3_2.call(branch7x7x3_1.call(x))));
        var bp = F.max_pool2d(x, 3, 2);
        return torch.cat(new[] { b3, b7, bp }, 1).MoveToOuterDisposeScope();
    }

    public override Dictionary<string, Tensor> state_dict(Dictionary<string, Tensor>? destination = null, string? prefix = null)
        => PyTorchOrder.StateDict(this, destination, prefix);
}

/// <summary>8×8 block with split 1x3/3x1 branches (Mixed_7b, 7c).</summary>
public sealed class InceptionE : Module<Tensor, Tensor>
{
    private readonly BasicConv2d branch1x1;
    private readonly BasicConv2d branch3x3_1, branch3x3_2a, branch3x3_2b;
    private readonly BasicConv2d branch3x3dbl_1, branch3x3dbl_2, branch3x3dbl_3a, branch3x3dbl_3b;
    private readonly BasicConv2d branch_pool;

    public long OutChannels { get; }

    public InceptionE(long inChannels, double width = 1.0) : base(nameof(InceptionE))
    {
        long S(long c) => PyTorchOrder.Scale(c, width);
        branch1x1 = new BasicConv2d(inChannels, S(320), 1);
        branch3x3_1 = new BasicConv2d(inChannels, S(384), 1);
        branch3x3_2a = new BasicConv2d(S(384), S(384), (1, 3), padding: (0, 1));
        branch3x3_2b = new BasicConv2d(S(384), S(384), (3, 1), padding: (1, 0));
        branch3x3dbl_1 = new BasicConv2d(inChannels, S(448), 1);
        branch3x3dbl_2 = new BasicConv2d(S(448), S(384), 3, padding: 1);
        branch3x3dbl_3a = new BasicConv2d(S(384), S(384), (1, 3), padding: (0, 1));
        branch3x3dbl_3b = new BasicConv2d(S(384), S(384), (3, 1), padding: (1, 0));
        branch_pool = new BasicConv2d(inChannels, S(192), 1);
        OutChannels = S(320) + 2 * S(384) + 2 * S(384) + S(192);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var b1 = branch1x1.call(x);
        var b3 = branch3x3_1.call(x);
        b3 = torch.cat(new[] { branch3x3_2a.call(b3), branch3x3_2b.call(b3) }, 1);
        var bd = branch3x3dbl_2.call(branch3x3dbl_1.call(x));
        bd = torch.cat(new[] { branch3x3dbl_3a.call(bd), branch3x3dbl_3b.call(bd) }, 1);
        var bp = branch_pool.call(F.avg_pool2d(x, 3, 1, 1, count_include_pad: true));
        return torch.cat(new[] { b1, b3, bd, bp }, 1).MoveToOuterDisposeScope();
    }

    public override Dictionary<string, Tensor> state_dict(Dictionary<string, Tensor>? destination = null, string? prefix = null)
        => PyTorchOrder.StateDict(this, destination, prefix);
}

/// <summary>Auxiliary classifier on Mixed_6e (training only; kept so checkpoints load strictly).</summary>
public sealed class InceptionAux : Module<Tensor, Tensor>
{
    private readonly BasicConv2d conv0, conv1;
    private readonly Linear fc;

    public InceptionAux(long inChannels, long numClasses, double width = 1.0) : base(nameof(InceptionAux))
    {
        long S(long c) => PyTorchOrder.Scale(c, width);
        conv0 = new BasicConv2d(inChannels, S(128), 1);
        conv1 = new BasicConv2d(S(128), S(768), 5);
        fc = Linear(S(768), numClasses);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var y = F.avg_pool2d(x, 5, 3);
        y = conv1.call(conv0.call(y));
        y = F.adaptive_avg_pool2d(y, new long[] { 1, 1 }).flatten(1);
        return fc.call(y).MoveToOuterDisposeScope();
    }

    public override Dictionary<string, Tensor> state_dict(Dictionary<string, Tensor>? destination = null, string? prefix = null)
        => PyTorchOrder.StateDict(this, destination, prefix);
}
