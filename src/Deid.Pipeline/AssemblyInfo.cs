namespace Deid.Pipeline;
