global using Xunit;
global using static Deid.Cli.Tests.DeidCli;
