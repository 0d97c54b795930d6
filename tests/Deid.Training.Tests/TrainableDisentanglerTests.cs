using Xunit;
using static TorchSharp.torch;

namespace Deid.Training.Tests;

public class TrainableDisentanglerTests
{
    [Fact]
    public void Frozen_parts_need_no_gradient_and_stay_in_eval_mode_while_E_attr_and_M_train()
    {
        var (model, dw) = TinyData.Build(TinyData.Config());
        using var _m = model; using var _d = dw;
        foreach (var f in model.FrozenModules)
        {
            Assert.All(f.parameters(), p => Assert.False(p.requires_grad));
            Assert.False(f.training);
        }
        Assert.All(model.TrainableParameters(), p => Assert.True(p.requires_grad));
        Assert.Equal(model.AttributeEncoder.parameters().Count() + model.Mapper.parameters().Count(), model.TrainableParameters().Count());
        model.train(true);
        Assert.True(model.AttributeEncoder.training && model.Mapper.training);
        Assert.All(model.FrozenModules, f => Assert.False(f.training));
        // The four parts (and E_lnd) are submodules: one .to()/state_dict covers them.
        var names = model.named_children().Select(c => c.name).ToList();
        Assert.Equal(new[] { "E_id", "E_attr", "M", "G", "E_lnd" }, names);
    }

    [Fact]
    public void Gradient_reaches_E_attr_through_G_and_the_frozen_encoders_and_never_lands_on_them()
    {
        var (model, dw) = TinyData.Build(TinyData.Config());
        using var _m = model; using var _d = dw;
        using var scope = NewDisposeScope();
        var gen = new TorchSharp.torch.Generator(5);
        var attr = (rand(2, 3, 32, 32, generator: gen) * 2 - 1);
        var idCode = model.EncodeIdentity(rand(2, 3, 32, 32, generator: gen) * 2 - 1).detach();
        var (w, image) = model.Forward(idCode, attr);
        // Only losses whose path to E_attr runs through G (and E_id / E_lnd): no L_adv, whose path skips G.
        var loss = Losses.IdentityLoss.Compute(idCode, model.EncodeIdentity(image))
                   + Losses.LandmarkLoss.Compute(model.Landmarks(attr).detach(), model.Landmarks(image));
        loss.backward();
        var attrGrads = model.AttributeEncoder.parameters().Where(p => p.grad is not null).ToList();
        Assert.NotEmpty(attrGrads);
        double total = attrGrads.Sum(p => p.grad!.abs().sum().item<float>());
        Assert.True(total > 0 && double.IsFinite(total), $"E_attr gradient sum {total}");
        Assert.All(attrGrads, p => Assert.True(isfinite(p.grad!).all().item<bool>()));
        foreach (var f in model.FrozenModules)
            Assert.All(f.parameters(), p => Assert.Null(p.grad));
    }
}
