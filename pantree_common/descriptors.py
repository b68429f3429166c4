"""The proto service of each pipeline step, by step name."""

from google.protobuf.descriptor import ServiceDescriptor
from pantree.frequency.v1 import frequency_service_pb2
from pantree.insights.v1 import insights_service_pb2
from pantree.orchestrator.v1 import orchestrator_service_pb2
from pantree.recommendation.v1 import recommendation_service_pb2
from pantree.simulation.v1 import simulation_service_pb2
from pantree.vectors.v1 import vectors_service_pb2

SERVICES: dict[str, ServiceDescriptor] = {
    "simulation": simulation_service_pb2.DESCRIPTOR.services_by_name["SimulationService"],
    "vectors": vectors_service_pb2.DESCRIPTOR.services_by_name["VectorService"],
    "frequency": frequency_service_pb2.DESCRIPTOR.services_by_name["FrequencyService"],
    "insights": insights_service_pb2.DESCRIPTOR.services_by_name["InsightsService"],
    "recommendation": recommendation_service_pb2.DESCRIPTOR.services_by_name[
        "RecommendationService"
    ],
    "orchestrator": orchestrator_service_pb2.DESCRIPTOR.services_by_name["OrchestratorService"],
}
