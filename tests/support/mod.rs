pub mod gateway;
pub mod mock_upstream;
pub mod postgres;
